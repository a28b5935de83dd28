"""One interface in front of both sides of the shared commands: this machine's lab, or a gateway.

:func:`open_backend` asks :func:`remotelab.cli.target.gateway` which side a command works
on and returns a :class:`Backend`: a :class:`~remotelab.cli.local.LocalBackend` (this
machine's Prefect queue, run store, stream proxy and lab file) or a
:class:`~remotelab.cli.remote.RemoteBackend` (a gateway through :class:`remotelab.Client`).
Each command in :mod:`remotelab.cli.commands` calls one method of it, whichever side it is.

Experiment and lab operations return data, which :mod:`remotelab.cli.render` prints the same
for both sides; ``plans``, ``devices``, ``show_lab``, ``runs`` and ``watch`` print what their
side knows (a lab file's devices and limits here; their live status through a gateway).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from remotelab.cli.target import gateway


@dataclass(frozen=True)
class Done:
    """A side's answer to a lab command (hold, pause…): the lab, and any detail to show, and
    the experiment it was for if one was named."""

    lab: str
    detail: Any = None
    experiment: str | None = None


class Backend(Protocol):
    """What the shared commands need of a side. Experiments are
    :class:`~remotelab.queue.Experiment` s (a gateway's are its subclass
    :class:`~remotelab.client.Submission`)."""

    def __enter__(self) -> Backend: ...

    def __exit__(self, *exc: object) -> None: ...

    def close(self) -> None:
        """Let go of what was opened (a queue client, an HTTP session)."""

    def lab_name(self) -> str:
        """The lab this side works on."""

    # -- experiments --------------------------------------------------------------------------
    def schema(self, plan: str) -> dict[str, Any]:
        """The JSON Schema of a plan's parameters (to read ``-p key=value``)."""

    def submit(self, plan: str, params: dict[str, Any], *, priority: str) -> Any:
        """Validate and queue an experiment."""

    def experiment(self, experiment_id: str) -> Any:
        """One experiment."""

    def wait(self, experiment_id: str) -> Any:
        """The experiment once it has ended."""

    def follow(self, experiment_id: str, *, as_json: bool) -> None:
        """Show an experiment's documents live until it ends."""

    def edit(self, experiment_id: str, params: dict[str, Any]) -> Any:
        """Change a waiting experiment's parameters (``None`` removes one)."""

    def experiments(
        self,
        *,
        states: list[str] | None,
        submitter: str | None,
        plan: str | None,
        limit: int,
        mine: bool = False,
    ) -> tuple[list[Any], int]:
        """A page of experiments in queue order (default: the unfinished), and the total."""

    def is_held(self) -> bool:
        """Whether the lab is held."""

    def cancel(self, experiment_id: str, *, reason: str = "") -> Any: ...

    def move(self, experiment_id: str, *, to: str | None = None, behind: str | None = None) -> Any:
        """Move a queued experiment ``to`` front or back, or ``behind`` another."""

    def prioritise(self, experiment_id: str, priority: str) -> Any: ...

    def approve(self, experiment_id: str) -> Any: ...

    def reject(self, experiment_id: str, *, reason: str = "") -> Any: ...

    def answer(self, experiment_id: str, value: Any) -> Any:
        """Answer the operator prompt of a running experiment."""

    # -- the lab --------------------------------------------------------------------------------
    def hold(self) -> Done: ...

    def release(self) -> Done: ...

    def pause(self, *, immediate: bool = False, experiment: str | None = None) -> Done:
        """Pause ``experiment``'s plan, or the lab's one running plan (an error naming them
        if several run)."""

    def resume(self, *, experiment: str | None = None) -> Done: ...

    def stop(self, *, experiment: str | None = None) -> Done: ...

    def abort(self, reason: str = "", *, experiment: str | None = None) -> Done:
        """Abort ``experiment``'s plan, or every running plan of the lab."""

    # -- notifications ------------------------------------------------------------------------
    def subscriptions(self) -> list[dict[str, Any]]:
        """The caller's notification subscriptions (a manager's: the lab's), URLs masked."""

    def subscribe(self, url: str, events: list[str]) -> dict[str, Any]:
        """A new subscription of the caller's (``events``: none means all)."""

    def unsubscribe(self, subscription_id: str) -> dict[str, Any]: ...

    def notify_test(self, subscription_id: str | None) -> list[dict[str, Any]]:
        """Send a test notification now; how each went."""

    # -- what each side shows its own way ----------------------------------------------------------
    def watch(self, experiment_id: str | None, *, timeout: float | None, as_json: bool) -> None:
        """Live documents and status (of one experiment until it ends)."""

    def plans(self, name: str | None, *, as_json: bool) -> None:
        """The lab's plans; one plan: its JSON Schema."""

    def devices(self, *, as_json: bool) -> None:
        """The lab's devices."""

    def show_lab(self, *, as_json: bool) -> None:
        """The lab: its devices and samples, or its state and live devices; what runs, the
        reservations and why experiments wait."""

    def runs(
        self,
        *,
        experiment: str | None,
        sample: str | None,
        plan: str | None,
        submitter: str | None,
        limit: int,
        as_json: bool,
    ) -> None:
        """Stored runs, newest first."""

    def export(self, uid: str, fmt: str, out: Path, *, stream: str | None = None) -> list[Path]:
        """Write a run's data (an experiment id: each of its runs) to files, the same files
        and names on both sides (csv/json: of event ``stream``, default primary); the files."""

    def plot(self, uid: str, output: Path | None, *, redraw: bool = False) -> Path:
        """Write a run's summary plot (PNG) to ``output`` (default ``run-<uid8>.png``)."""

    def verify(self, uid: str) -> dict[str, Any]:
        """A run checked against its recorded content hash: ``uid``, ``ok``, ``expected``,
        ``actual``, ``detail``."""


def open_backend(
    url: str | None,
    token: str | None,
    lab: str | None = None,
    *,
    local: bool = False,
    remote_side: dict[str, Any] | None = None,
    **lab_side: Any,
) -> Backend:
    """The side a command works on (see :func:`remotelab.cli.target.gateway`).

    ``lab_side`` are the options that only work on this machine, by name (``api``, ``by``,
    ``submitter``, ``role``, ``store``, ``stream`` (watch's proxy address), ``rows``,
    ``since``, ``until``); one given
    while a gateway is chosen is a usage error naming its flag, as is one of ``remote_side``
    (flag → value) given on this machine.
    """
    flags = {f"--{name}": value for name, value in lab_side.items()}
    client = gateway(url, token, lab, local=local, lab_side=flags, remote_side=remote_side)
    if client is not None:
        from remotelab.cli.remote import RemoteBackend

        return RemoteBackend(client)
    from remotelab.cli.local import LocalBackend

    return LocalBackend(lab, **lab_side)


__all__ = ["Backend", "Done", "open_backend"]
