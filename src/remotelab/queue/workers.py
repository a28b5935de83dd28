"""The queue's side of the control channel: finding a lab's live workers and telling them.

Controls Prefect cannot carry (pause, resume, stop, abort, operator answers, prompt wake-ups)
go to the worker over zmq (:mod:`remotelab.queue.control`) as typed commands
(:mod:`remotelab.queue.commands`). :class:`WorkerControl` is the part of
:class:`~remotelab.queue.ExperimentQueue` that does it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

from remotelab.errors import ExperimentStateError, SeveralRunningError, WorkerUnavailable
from remotelab.queue import control, lanes
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
)
from remotelab.queue.models import Experiment, ExperimentState, Question
from remotelab.queue.waking import Waker

if TYPE_CHECKING:
    from remotelab.queue.prefect_lab import LabOnPrefect

#: the experiment states in which a worker runs it
ACTIVE = (ExperimentState.running, ExperimentState.paused)
#: how long (s) the list of live workers read last is reused for wake-ups
WORKERS_TTL = 2.0
#: how long (s) a worker may take to answer ``Status``
STATUS_TIMEOUT = 1.0
#: how long (s) the waits read last are reused for listings
STATUS_TTL = 0.5


def _plain(reply: Reply) -> dict[str, Any]:
    return reply.model_dump(exclude_none=True)


class WorkerControl:
    """Pause, resume, stop, abort (of one experiment, or the lab's running one), answers,
    reservations, hold/release notices and wake-ups; mixed into
    :class:`~remotelab.queue.ExperimentQueue`."""

    name: str
    prefect: LabOnPrefect
    notify: bool
    _workers_cache: tuple[float, list[WorkerAnnouncement]]
    _status_cache: tuple[float, dict[str, str]]
    _waker: Waker

    if TYPE_CHECKING:  # provided by ExperimentQueue

        def get(self, experiment_id: str | UUID) -> Experiment: ...

        def current(self) -> Experiment | None: ...

    # -- the running plans -------------------------------------------------------------------
    def pause(self, *, immediate: bool = False, experiment: str | None = None) -> dict[str, Any]:
        """Pause a running plan at its next checkpoint (``immediate``: now, rewinding to the
        last checkpoint): ``experiment``'s, or the one running (:class:`SeveralRunningError`
        if several run)."""
        return self._interrupt(lambda exp: Pause(experiment=exp, defer=not immediate), experiment)

    def resume(self, *, experiment: str | None = None) -> dict[str, Any]:
        """Resume a paused plan (``experiment``'s, or the one running)."""
        return self._interrupt(lambda exp: Resume(experiment=exp), experiment)

    def stop(self, *, experiment: str | None = None) -> dict[str, Any]:
        """End a running plan cleanly (exit status ``success``); the experiment completes."""
        return self._interrupt(lambda exp: Stop(experiment=exp), experiment)

    def abort(self, reason: str = "", *, experiment: str | None = None) -> dict[str, Any]:
        """Abort a running plan (exit status ``abort``); its devices go safe; it ends
        Cancelled. Without ``experiment``: every running plan of the lab."""
        return self._interrupt(
            lambda exp: Abort(experiment=exp, reason=reason), experiment, every=True
        )

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
        mine = [e for e in lanes.running_of(info, "") if e["id"] == exp.id]
        asked = (mine[0].get("question") if mine else None) or info.get("question")
        if not asked or asked.get("experiment_id") != exp.id:
            return None
        return Question.model_validate(asked)

    def _interrupt(
        self, command: Callable[[str], Command], experiment: str | None, *, every: bool = False
    ) -> dict[str, Any]:
        """Send ``command(id)`` to the worker running ``experiment``; without one, to the one
        running experiment (``every``: to each of them, else :class:`SeveralRunningError`)."""
        if experiment is not None:
            exp = self.get(experiment)
            if exp.state not in ACTIVE:
                raise ExperimentStateError(
                    f"experiment {exp.id} is {exp.state.value}, not running on lab {self.name}"
                )
            return _plain(self._to_worker(exp, command(exp.id)))
        statuses = self._statuses()
        view = lanes.merge((w.id, info) for w, info in statuses)
        ids = lanes.running_ids(view)
        if not ids:
            now = self.current()
            if now is None:
                raise ExperimentStateError(f"nothing runs on lab {self.name} now")
            return _plain(self._to_worker(now, command(now.id)))
        if len(ids) > 1 and not every:
            raise SeveralRunningError(self.name, ids)
        by_worker = {w.id: w for w, _ in statuses}
        replies: dict[str, dict[str, Any]] = {}
        refused: list[ExperimentStateError | WorkerUnavailable] = []
        for entry in (e for e in view["running"] if e["id"] in ids):
            try:
                reply = self._ask(by_worker[entry["worker"]], command(entry["id"]))
            except (ExperimentStateError, WorkerUnavailable) as exc:  # e.g. it just ended
                replies[entry["id"]] = {"ok": False, "error": str(exc)}
                refused.append(exc)
            else:
                replies[entry["id"]] = _plain(reply)
        if len(refused) == len(replies):
            raise refused[0]
        if len(replies) == 1:
            return next(iter(replies.values()))
        return {"ok": True, "note": f"sent to {', '.join(replies)}", "experiments": replies}

    def reservations(self) -> dict[str, Any]:
        """The lab's device reservations, why queued experiments wait, and what runs, as its
        live workers say: ``{"reservations", "waiting", "running", "concurrency",
        "workers"}`` (see :mod:`remotelab.queue.lanes`)."""
        return lanes.merge((w.id, info) for w, info in self._statuses())

    def waits(self) -> dict[str, str]:
        """Why each waiting experiment waits (experiment id → reason), as the workers said at
        most :data:`STATUS_TTL` s ago; empty if none answers."""
        stamp, cached = self._status_cache
        if time.monotonic() - stamp < STATUS_TTL:
            return cached
        try:
            found = self.reservations()["waiting"] if self._live_workers() else {}
        except Exception:  # a listing must not fail on a worker's status
            found = {}
        self._status_cache = (time.monotonic(), found)
        return found

    def annotate(self, experiments: list[Experiment]) -> list[Experiment]:
        """Fill in ``waiting_for`` of the unfinished ``experiments`` from :meth:`waits`."""
        if not any(not e.state.finished for e in experiments):
            return experiments
        why = self.waits()
        for exp in experiments:
            if not exp.state.finished:
                exp.waiting_for = why.get(exp.id)
        return experiments

    def _statuses(self) -> list[tuple[WorkerAnnouncement, dict[str, Any]]]:
        """Each live worker that answers ``Status`` (all asked at once), with its status."""
        workers = self._live_workers(fresh=True)
        replies = control.request_many(
            [w.control_address for w in workers], Status(), STATUS_TIMEOUT
        )
        out = []
        for worker in workers:
            reply = replies.get(worker.control)
            if reply is not None and reply.ok:
                out.append((worker, reply.info or {}))
        return out

    # -- workers -----------------------------------------------------------------------------
    def workers(self, *, fresh: bool = False) -> list[dict[str, Any]]:
        """The live workers of this lab, as they announce themselves."""
        return [w.to_value() for w in self._live_workers(fresh=fresh)]

    def alerts(self) -> list[dict[str, Any]]:
        """The open alerts of the lab's live workers (outages, faults, stalls), oldest first,
        each with the worker that raised it."""
        found = [{**a, "worker": w.id} for w in self._live_workers() for a in w.alerts]
        return sorted(found, key=lambda a: str(a.get("since", "")))

    def _live_workers(self, *, fresh: bool = False) -> list[WorkerAnnouncement]:
        stamp, cached = self._workers_cache
        if not fresh and time.monotonic() - stamp < WORKERS_TTL:
            return cached
        found = self.prefect.workers()
        self._workers_cache = (time.monotonic(), found)
        return found

    def _to_worker(self, exp: Experiment, command: Command) -> Reply:
        """Send ``command`` to the worker that runs ``exp`` (by its worker label, else by the
        workers' announcements or status)."""
        workers = self._live_workers(fresh=True)
        target = [w for w in workers if w.id == exp.worker] or [
            w for w in workers if w.runs(exp.id)
        ]
        if not target:
            target = [
                w
                for w, info in self._statuses()
                if exp.id in {e["id"] for e in lanes.running_of(info, w.id)}
            ]
        if not target:
            raise WorkerUnavailable(f"no live worker runs experiment {exp.id} of lab {self.name}")
        return self._ask(target[0], command)

    def _ask(self, worker: WorkerAnnouncement, command: Command) -> Reply:
        """One command to one worker; its refusal as a typed error (several experiments run:
        :class:`SeveralRunningError`)."""
        reply = control.request(worker.control_address, command)
        if not reply.ok:
            running = (reply.info or {}).get("running")
            if isinstance(running, list) and len(running) > 1:
                ids = [str(r["id"] if isinstance(r, dict) else r) for r in running]
                raise SeveralRunningError(self.name, ids)
            raise ExperimentStateError(reply.error or f"worker {worker.id} refused")
        return reply

    def broadcast(self, command: Command, timeout: float = 1.0) -> int:
        """Send a command to every live worker of the lab (all at once); how many answered."""
        if not self.notify:
            return 0
        addresses = [w.control_address for w in self._live_workers()]
        return len(control.request_many(addresses, command, timeout))

    def notify_held(self, held: bool) -> int:
        """Tell the lab's workers the lab was held or released."""
        return self.broadcast(Hold() if held else Release())

    def wake(self) -> None:
        """Tell the lab's workers there is work (they also poll, more slowly), in the
        background: the caller never waits on a worker (see :mod:`remotelab.queue.waking`)."""
        if self.notify:
            self._waker.wake()


__all__ = ["ACTIVE", "STATUS_TIMEOUT", "STATUS_TTL", "WorkerControl"]
