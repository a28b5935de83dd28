"""The outcome of a finished experiment, decided from what happened: a pure function.

:func:`decide` takes the exit statuses of the experiment's bluesky runs, the reason it was
cancelled (if it was), the error that ended it (if any) and whether it was stopped early, and
says how it ends in the queue: the Prefect state type, its message and the experiment's exit
status. :func:`summary` writes the markdown summary recorded with it. Neither touches Prefect,
the RunEngine or the devices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prefect.client.schemas.objects import StateType
from prefect.states import Cancelled, Completed, Failed, State


@dataclass(frozen=True)
class Outcome:
    """How an experiment ends: Prefect state type, message and exit status."""

    type: StateType
    message: str
    exit_status: str | None

    @property
    def completed(self) -> bool:
        return self.type == StateType.COMPLETED

    def state(self, tag: str, suffix: str = "") -> State:
        """The Prefect state to record, its message starting with the worker's ``tag``."""
        make = {
            StateType.COMPLETED: Completed,
            StateType.FAILED: Failed,
            StateType.CANCELLED: Cancelled,
        }[self.type]
        return make(message=f"{tag} {self.message}{suffix}")


def exit_status_of(statuses: Sequence[str]) -> str | None:
    """The experiment's exit status from its runs': an abort or a failure in any run wins,
    else the last run's; None if it made no run."""
    if "abort" in statuses:
        return "abort"
    if "fail" in statuses:
        return "fail"
    return statuses[-1] if statuses else None


def error_text(error: BaseException) -> str:
    """What went wrong, said by the error that knows: a device's failed status (bluesky's
    ``FailedStatus``, which only prints the status object) by the error that failed it."""
    while type(error).__name__ == "FailedStatus" and error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}"


def decide(
    exit_statuses: Sequence[str],
    *,
    cancel_reason: str | None = None,
    error: BaseException | None = None,
    stopped_early: bool = False,
    runs: int = 0,
    duration: float = 0.0,
) -> Outcome:
    """The outcome of an experiment (see the module's docstring).

    A cancel wins over everything (the plan was aborted on purpose), then an error raised
    outside the plan's runs (validation, building the plan, the RunEngine), then the runs'
    exit status: ``abort`` cancels, ``fail`` fails, anything else completes.
    """
    status = exit_status_of(exit_statuses)
    if cancel_reason is not None:
        return Outcome(StateType.CANCELLED, cancel_reason, status)
    if error is not None:
        return Outcome(StateType.FAILED, error_text(error), status)
    if status == "abort":
        return Outcome(StateType.CANCELLED, "aborted", status)
    if status == "fail":
        return Outcome(StateType.FAILED, "the plan failed", status)
    note = " (stopped early)" if exit_statuses and stopped_early else ""
    return Outcome(
        StateType.COMPLETED, f"completed{note}: {runs} run(s) in {duration:.2f} s", status
    )


def summary(
    exp: Any,
    outcome: Outcome,
    *,
    lab: str,
    worker: str,
    uids: Sequence[str],
    duration: float,
    error: BaseException | None = None,
    unsafe: BaseException | None = None,
    data_url: str | None = None,
) -> str:
    """The markdown summary of a finished experiment (its Prefect artifact)."""
    lines = [
        f"# Experiment {exp.id}",
        "",
        "| | |",
        "|---|---|",
        f"| lab | {lab} |",
        f"| plan | `{exp.plan}` |",
        f"| parameters | `{exp.params}` |",
        f"| submitter | {exp.submitter} ({exp.role}) |",
        f"| priority | {exp.priority.value} |",
        f"| outcome | {outcome.type.value.lower()} |",
        f"| exit status | {outcome.exit_status or '-'} |",
        f"| duration | {duration:.3f} s |",
        f"| worker | {worker} |",
    ]
    for uid in uids:
        link = data_url.format(uid=uid) if data_url else ""
        lines.append(f"| run | `{uid}` {f'[data]({link})' if link else ''} |")
    if error is not None:
        lines += ["", f"**Error:** {error_text(error)}"]
    if unsafe is not None:
        lines += ["", f"**Devices not safe; lab held:** {unsafe}"]
    return "\n".join(lines)


__all__ = ["Outcome", "decide", "error_text", "exit_status_of", "summary"]
