"""The worker's side of the control channel: one handler per command, in a table.

Like the RunEngine's command table, :class:`CommandTable` maps each command type
(:mod:`remotelab.queue.commands`) to the method that serves it. A command to an experiment
goes to the lane that runs it: the one it names, or, if it names none, the only one running;
with several running, such a command is refused (its reply lists them), except ``abort``,
which aborts them all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from prefect.client.schemas.objects import StateType

from remotelab.queue.commands import (
    Abort,
    Answer,
    Cancel,
    Command,
    Hold,
    Pause,
    Release,
    Reply,
    Resume,
    Status,
    Stop,
    Wake,
)
from remotelab.queue.prefect_lab import LabOnPrefect
from remotelab.worker.claiming import Claimer
from remotelab.worker.lanes import Lane


class CommandTable:
    """Serves control commands for one worker from its parts; ``running()`` gives the lanes
    that run an experiment now."""

    def __init__(
        self,
        worker_id: str,
        claimer: Claimer,
        running: Callable[[], list[Lane]],
        status: Callable[[], dict[str, Any]],
        wake: threading.Event,
    ):
        self.worker_id = worker_id
        self.claimer = claimer
        self.running = running
        self.status = status
        self.wake = wake
        self.table: dict[type, Callable[[Any], Reply]] = {
            Wake: self._new_work,
            Hold: self._hold_changed,
            Release: self._hold_changed,
            Status: self._status,
        }
        self.to_experiment: dict[type, Callable[[Lane, Any], Reply]] = {
            Answer: lambda lane, command: lane.questions.answer(command.value),
            Pause: lambda lane, command: lane.runner.interrupt(command),
            Resume: lambda lane, command: lane.runner.interrupt(command),
            Stop: lambda lane, command: lane.runner.interrupt(command),
            Abort: lambda lane, command: lane.runner.interrupt(command),
            Cancel: lambda lane, command: lane.runner.interrupt(command),
        }

    def __call__(self, command: Command) -> Reply:
        serve = self.to_experiment.get(type(command))
        if serve is None:
            return self.table[type(command)](command)
        lanes = self.running()
        ids = [lane.experiment_id() for lane in lanes]
        meant = getattr(command, "experiment", None)
        if not lanes:
            return Reply.refused(f"worker {self.worker_id} runs no experiment now")
        if meant:
            for lane in lanes:
                if lane.experiment_id() == meant:
                    return serve(lane, command)
            which = "the one running (that is " if len(ids) == 1 else "one of those running ("
            return Reply.refused(f"experiment {meant} is not {which}{', '.join(ids)})")
        if len(lanes) == 1:
            return serve(lanes[0], command)
        if isinstance(command, Abort):
            replies = [serve(lane, command) for lane in lanes]
            errors = [r.error for r in replies if not r.ok and r.error]
            if errors:
                return Reply.refused("; ".join(errors))
            return Reply.done(f"aborted {', '.join(ids)}")
        return Reply(
            ok=False,
            error=f"several experiments run: {', '.join(ids)}; name one",
            info={"running": ids},
        )

    def _new_work(self, _command: Wake) -> Reply:
        self.claimer.invalidate()
        self.wake.set()
        return Reply.done()

    def _hold_changed(self, _command: Hold | Release) -> Reply:
        self.claimer.invalidate(held=True)
        self.wake.set()
        return Reply.done()

    def _status(self, _command: Status) -> Reply:
        return Reply(ok=True, info=self.status())


def watch_prefect_cancels(
    lanes: list[Lane], prefect: LabOnPrefect, poll_interval: float, stopping: threading.Event
) -> None:
    """Until ``stopping``: notice a cancel requested in Prefect itself (its UI or CLI set
    Cancelling) of an experiment a lane runs, and cancel its plan."""
    while not stopping.wait(poll_interval):
        for lane in lanes:
            current = lane.runner.current
            if current is None or current.cancel_reason is not None:
                continue
            try:
                state = prefect.read_run(current.exp.id).state
            except Exception:
                continue
            cancelling = state is not None and state.type == StateType.CANCELLING
            if cancelling and state is not None and lane.runner.current is current:
                lane.runner.interrupt(Cancel(reason=state.message or "cancelled"))


__all__ = ["CommandTable", "watch_prefect_cancels"]
