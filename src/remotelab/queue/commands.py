"""The control channel's wire format: the commands a worker obeys and its replies.

A request is one JSON object with a ``cmd`` field (a :data:`Command`); the reply is a
:class:`Reply`. Both sides use these models: the queue sends a typed command
(:func:`remotelab.queue.control.request`) and the worker parses what arrives with
:func:`parse_command`, answering a malformed request with a reply that says what was wrong.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Wake(_Command):
    """New work, a move or a cancel: read the queue again now."""

    cmd: Literal["wake"] = "wake"


class Hold(_Command):
    """The lab was held: start no further experiment."""

    cmd: Literal["hold"] = "hold"


class Release(_Command):
    """The lab was released: queued experiments may start again."""

    cmd: Literal["release"] = "release"


class Status(_Command):
    """Say what you are doing (the reply carries the worker's announcement)."""

    cmd: Literal["status"] = "status"


class _ToExperiment(_Command):
    experiment: str | None = Field(
        None, description="the experiment meant; refused if another one runs"
    )


class Pause(_ToExperiment):
    """Pause the running plan: at its next checkpoint (``defer``) or now."""

    cmd: Literal["pause"] = "pause"
    defer: bool = True


class Resume(_ToExperiment):
    """Resume the paused plan."""

    cmd: Literal["resume"] = "resume"


class Stop(_ToExperiment):
    """End the running plan cleanly (exit status ``success``)."""

    cmd: Literal["stop"] = "stop"


class Abort(_ToExperiment):
    """Abort the running plan (exit status ``abort``); the experiment ends Cancelled."""

    cmd: Literal["abort"] = "abort"
    reason: str = ""


class Cancel(_ToExperiment):
    """Cancel the experiment: its plan is aborted and it ends Cancelled with ``reason``."""

    cmd: Literal["cancel"] = "cancel"
    reason: str = ""


class Answer(_ToExperiment):
    """Answer the question the running plan asks the operator."""

    cmd: Literal["answer"] = "answer"
    value: Any = True


Command = Annotated[
    Wake | Hold | Release | Status | Pause | Resume | Stop | Abort | Cancel | Answer,
    Field(discriminator="cmd"),
]
#: the commands that interrupt the running plan through the RunEngine
Interrupt = Pause | Resume | Stop | Abort | Cancel

_COMMAND: TypeAdapter[Command] = TypeAdapter(Command)


class BadCommand(ValueError):
    """A control request that is not a command (unknown ``cmd``, a wrong field)."""


def parse_command(data: Any) -> Command:
    """The command a decoded request holds; :class:`BadCommand` saying what is wrong."""
    try:
        return _COMMAND.validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors()
        )
        raise BadCommand(f"not a control command ({problems})") from None


class Reply(BaseModel):
    """A worker's answer: ``ok``, an ``error`` or a ``note``, and for ``status`` its
    announcement (in ``info``)."""

    ok: bool
    error: str | None = None
    note: str | None = None
    info: dict[str, Any] | None = None

    @classmethod
    def done(cls, note: str | None = None) -> Reply:
        return cls(ok=True, note=note)

    @classmethod
    def refused(cls, error: str) -> Reply:
        return cls(ok=False, error=error)


__all__ = [
    "Abort",
    "Answer",
    "BadCommand",
    "Cancel",
    "Command",
    "Hold",
    "Interrupt",
    "Pause",
    "Release",
    "Reply",
    "Resume",
    "Status",
    "Stop",
    "Wake",
    "parse_command",
]
