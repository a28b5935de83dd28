"""The queue's side of the control channel: finding a lab's live workers and telling them.

Controls Prefect cannot carry (pause, resume, stop, abort, operator answers, prompt wake-ups)
go to the worker over zmq (:mod:`remotelab.queue.control`) as typed commands
(:mod:`remotelab.queue.commands`). :class:`WorkerControl` is the part of
:class:`~remotelab.queue.ExperimentQueue` that does it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from uuid import UUID

from remotelab.errors import ExperimentStateError, WorkerUnavailable
from remotelab.queue import control
from remotelab.queue.announcement import WorkerAnnouncement
from remotelab.queue.commands import (
    Abort,
    Answer,
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
from remotelab.queue.models import Experiment, ExperimentState, Question

if TYPE_CHECKING:
    from remotelab.queue.prefect_lab import LabOnPrefect

#: the experiment states in which a worker runs it
ACTIVE = (ExperimentState.running, ExperimentState.paused)
#: how long (s) the list of live workers read last is reused for wake-ups
WORKERS_TTL = 2.0


def _plain(reply: Reply) -> dict[str, Any]:
    return reply.model_dump(exclude_none=True)


class WorkerControl:
    """Pause, resume, stop, abort, answers, hold/release notices and wake-ups; mixed into
    :class:`~remotelab.queue.ExperimentQueue`."""

    name: str
    prefect: LabOnPrefect
    notify: bool
    _workers_cache: tuple[float, list[WorkerAnnouncement]]

    if TYPE_CHECKING:  # provided by ExperimentQueue

        def get(self, experiment_id: str | UUID) -> Experiment: ...

        def current(self) -> Experiment | None: ...

    # -- the running plan --------------------------------------------------------------------
    def pause(self, *, immediate: bool = False) -> dict[str, Any]:
        """Pause the running plan at its next checkpoint (``immediate``: now, rewinding to the
        last checkpoint)."""
        return self._to_current(lambda exp: Pause(experiment=exp, defer=not immediate))

    def resume(self) -> dict[str, Any]:
        """Resume the paused plan."""
        return self._to_current(lambda exp: Resume(experiment=exp))

    def stop(self) -> dict[str, Any]:
        """End the running plan cleanly (exit status ``success``); the experiment completes."""
        return self._to_current(lambda exp: Stop(experiment=exp))

    def abort(self, reason: str = "") -> dict[str, Any]:
        """Abort the running plan (exit status ``abort``); devices go safe; it ends Cancelled."""
        return self._to_current(lambda exp: Abort(experiment=exp, reason=reason))

    def answer(self, experiment_id: str, value: Any = True) -> dict[str, Any]:
        """Answer the question the experiment's plan asked the operator."""
        exp = self.get(experiment_id)
        if exp.state not in ACTIVE:
            raise ExperimentStateError(f"experiment {experiment_id} is {exp.state.value}")
        return _plain(self._to_worker(exp, Answer(experiment=exp.id, value=value)))

    def question(self, experiment_id: str) -> Question | None:
        """The question the experiment's plan waits on the operator to answer, if any."""
        exp = self.get(experiment_id)
        if exp.state not in ACTIVE:
            return None
        info = self._to_worker(exp, Status()).info or {}
        asked = info.get("question")
        if not asked or asked.get("experiment_id") != exp.id:
            return None
        return Question.model_validate(asked)

    def _to_current(self, command: Any) -> dict[str, Any]:
        exp = self.current()
        if exp is None:
            raise ExperimentStateError(f"nothing runs on lab {self.name} now")
        return _plain(self._to_worker(exp, command(exp.id)))

    # -- workers -----------------------------------------------------------------------------
    def workers(self, *, fresh: bool = False) -> list[dict[str, Any]]:
        """The live workers of this lab, as they announce themselves."""
        return [w.to_value() for w in self._live_workers(fresh=fresh)]

    def _live_workers(self, *, fresh: bool = False) -> list[WorkerAnnouncement]:
        stamp, cached = self._workers_cache
        if not fresh and time.monotonic() - stamp < WORKERS_TTL:
            return cached
        found = self.prefect.workers()
        self._workers_cache = (time.monotonic(), found)
        return found

    def _to_worker(self, exp: Experiment, command: Command) -> Reply:
        workers = self._live_workers(fresh=True)
        target = [w for w in workers if w.id == exp.worker] or [
            w for w in workers if w.current == exp.id
        ]
        if not target:
            raise WorkerUnavailable(f"no live worker runs experiment {exp.id} of lab {self.name}")
        reply = control.request(target[0].control, command)
        if not reply.ok:
            raise ExperimentStateError(reply.error or "the worker refused")
        return reply

    def broadcast(self, command: Command, timeout: float = 1.0) -> int:
        """Send a command to every live worker of the lab; how many answered."""
        if not self.notify:
            return 0
        n = 0
        for worker in self._live_workers():
            try:
                control.request(worker.control, command, timeout=timeout)
                n += 1
            except WorkerUnavailable:
                continue
        return n

    def notify_held(self, held: bool) -> int:
        """Tell the lab's workers the lab was held or released."""
        return self.broadcast(Hold() if held else Release())

    def wake(self) -> int:
        """Tell the lab's workers there is work (they also poll, more slowly)."""
        return self.broadcast(Wake())


__all__ = ["ACTIVE", "WorkerControl"]
