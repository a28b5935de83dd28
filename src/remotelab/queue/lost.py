"""Lost workers: noticed by whoever is still there (the gateway, or a peer worker of the lab).

A worker whose heartbeat has stopped for ``lost_after`` seconds (the setting
``REMOTELAB_WORKER_LOST_AFTER``, 60 s by default) is *lost*. :class:`LostWorkers` watches a
lab's announcements and, for a lost worker:

1. records it as lost (:class:`~remotelab.queue.announcement.LostRecord`): creating that
   Prefect variable is the compare-and-set that lets only one marker go on;
2. marks its active experiments Crashed, with :func:`~remotelab.queue.messages.lost_message`
   and the run uids it had emitted (from its announcement and ``run_uids``, e.g. the run
   store); Prefect refuses a Crashed state over a finished run, so an experiment is never
   marked twice, nor over its worker's own outcome;
3. (before 2.) gives back its leases on the lab's device slots and removes its
   announcement;
4. calls ``on_lost(announcement, crashed)`` (the notification hook).

Silence is timed on the watcher's own clock from when it last saw the heartbeat change (no
clock is compared with another host's), and only while the watcher itself reads Prefect: a
watcher that could not look for a while (Prefect down, its process paused) starts counting
again, so an outage of Prefect never makes every worker lost when it ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from prefect.client.schemas.objects import StateType
from prefect.states import Crashed, State

from remotelab.notify import Event, EventKind, Notifier
from remotelab.queue import transitions
from remotelab.queue.announcement import HEARTBEAT_INTERVAL, LostRecord, WorkerAnnouncement
from remotelab.queue.edit_hold import held_for_edit
from remotelab.queue.messages import AWAITING_APPROVAL, lost_message, run_labels
from remotelab.queue.models import Experiment
from remotelab.queue.prefect_lab import LabOnPrefect
from remotelab.queue.transitions import StateChanged

log = logging.getLogger("remotelab.queue")

#: the notification hook: the lost worker's last announcement and the experiments marked
OnLost = Callable[[WorkerAnnouncement, list[Experiment]], None]
#: experiment id → the uids of the runs its documents opened (e.g. from the run store)
RunUids = Callable[[str], list[str]]
#: the Prefect states of a run some worker has (or had) in hand
ACTIVE_TYPES = (StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING)
#: seconds a lost worker's record is kept (unless the worker comes back first)
LOST_KEEP = 24 * 3600.0


class StoredRuns(Protocol):
    """What :func:`store_run_uids` needs of a run store (:class:`remotelab.data.RunStore`)."""

    def runs(self, *, experiment_id: str | None = None) -> Sequence[Any]: ...


def store_run_uids(store: StoredRuns | None) -> RunUids | None:
    """An experiment's run uids (oldest first) as ``store`` holds them (None: no store)."""
    if store is None:
        return None

    def run_uids(experiment_id: str) -> list[str]:
        runs = sorted(store.runs(experiment_id=experiment_id), key=lambda r: r.time)
        return [r.uid for r in runs]

    return run_uids


def check_interval(lost_after: float) -> float:
    """How often (s) a watcher looks at the heartbeats, for a ``lost_after`` threshold."""
    return max(0.2, min(HEARTBEAT_INTERVAL, lost_after / 4))


class HeartbeatWatch:
    """How long each worker's heartbeat has not changed, on this process's clock."""

    def __init__(
        self,
        lost_after: float,
        *,
        max_gap: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.lost_after = lost_after
        #: a longer gap between two looks restarts the count (the watcher could not look)
        self.max_gap = max_gap if max_gap is not None else lost_after / 2
        self.clock = clock
        #: worker id → (its heartbeat as last read, when it was first read so)
        self.seen: dict[str, tuple[str, float]] = {}
        self.looked_at: float | None = None

    def observe(self, workers: list[WorkerAnnouncement]) -> list[tuple[WorkerAnnouncement, float]]:
        """Note the heartbeats read now; the workers silent for ``lost_after`` s, each with
        how long."""
        now = self.clock()
        if self.looked_at is not None and now - self.looked_at > self.max_gap:
            # this watcher could not look for a while: what it did not see, it cannot vouch for
            self.seen = {wid: (beat, now) for wid, (beat, _) in self.seen.items()}
        self.looked_at = now
        seen: dict[str, tuple[str, float]] = {}
        silent = []
        for worker in workers:
            beat, since = self.seen.get(worker.id, (worker.heartbeat, now))
            if beat != worker.heartbeat:
                since = now
            seen[worker.id] = (worker.heartbeat, since)
            if now - since >= self.lost_after:
                silent.append((worker, now - since))
        self.seen = seen
        return silent


def owned_by(run_exp: Experiment, info: WorkerAnnouncement) -> bool:
    """Whether the lost worker had this experiment in hand."""
    return run_exp.worker == info.id or info.runs(run_exp.id)


def announced_uids(info: WorkerAnnouncement, experiment_id: str) -> list[str]:
    """The run uids the worker announced for an experiment it ran."""
    for entry in info.running:
        if isinstance(entry, dict) and entry.get("id") == experiment_id:
            return [str(u) for u in entry.get("runs") or []]
    return []


def crash(prefect: LabOnPrefect, run_id: UUID, state: State, message: str) -> bool:
    """Mark a run in active ``state`` Crashed unless it has ended meanwhile (Prefect refuses
    Crashed over a finished run); whether this call did."""
    if state.type == StateType.CANCELLING:  # Prefect lets only Cancelled follow it unforced
        try:
            transitions.set_state_after(
                prefect, run_id, Crashed(message=message), state.id, force=True
            )
        except StateChanged:
            return False
        return True
    return prefect.set_state(run_id, Crashed(message=message)).accepted


def crash_experiments(
    prefect: LabOnPrefect,
    info: WorkerAnnouncement,
    by: str,
    silent_for: float,
    run_uids: RunUids | None = None,
) -> list[Experiment]:
    """Mark Crashed the active experiments of lost worker ``info``; those this call marked."""
    crashed = []
    for run in prefect.runs(ACTIVE_TYPES):
        state = run.state
        if state is None or (state.type == StateType.PAUSED and state.name == AWAITING_APPROVAL):
            continue
        if held_for_edit(state):
            continue
        exp = Experiment.from_flow_run(run)
        if not owned_by(exp, info):
            continue
        uids = announced_uids(info, exp.id)
        if run_uids is not None:
            try:
                uids += [u for u in run_uids(exp.id) if u not in uids]
            except Exception as exc:
                log.warning("could not read the runs of experiment %s: %s", exp.id, exc)
        if not crash(prefect, run.id, state, lost_message(info.id, by, uids, silent_for)):
            continue
        try:
            prefect.update_labels(run.id, run_labels(info.id, uids))
        except Exception as exc:  # the message holds them too
            log.warning("could not label experiment %s: %s", exp.id, exc)
        crashed.append(Experiment.from_flow_run(prefect.read_run(run.id)))
    return crashed


def release(prefect: LabOnPrefect, info: WorkerAnnouncement) -> None:
    """Give back a gone worker's leases on the lab's device slots; remove its announcement."""
    slots = prefect.device_slots()
    for lease in info.leases:
        try:
            slots.give_back(lease)
        except Exception as exc:  # Prefect expires it by itself
            log.warning("could not give back lease %s of worker %s: %s", lease, info.id, exc)
    prefect.withdraw(info.id)


class LostWorkers:
    """Watches lab ``prefect``'s workers and marks lost those silent for ``lost_after`` s.

    ``by`` names the watcher in the messages it writes (no ``;``); ``own_id`` is the
    watcher's own worker id (never marked); ``run_uids`` finds an experiment's run uids where
    the dead worker cannot be asked (the run store); ``on_lost`` is called once per lost
    worker, by the one watcher that marked it. ``interval`` is how often the caller looks
    (default :func:`check_interval`).
    """

    def __init__(
        self,
        prefect: LabOnPrefect,
        by: str,
        *,
        lost_after: float,
        own_id: str | None = None,
        run_uids: RunUids | None = None,
        on_lost: OnLost | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if ";" in by:
            raise ValueError(f"a watcher's name has no ';': {by!r}")
        self.prefect = prefect
        self.by = by
        self.lost_after = lost_after
        self.own_id = own_id
        self.run_uids = run_uids
        self.on_lost = on_lost
        self.interval = interval if interval is not None else check_interval(lost_after)
        self.watch = HeartbeatWatch(
            lost_after, max_gap=max(lost_after / 2, 3 * self.interval), clock=clock
        )
        self._lock = threading.Lock()
        self._failing = False

    def check(self) -> list[LostRecord]:
        """One look at the lab's workers: those found lost and marked by this watcher."""
        with self._lock:
            workers = [w for w in self.prefect.workers(live=False) if w.id != self.own_id]
            marked = []
            for info, silent_for in self.watch.observe(workers):
                record = self.mark(info, silent_for)
                if record is not None:
                    marked.append(record)
            return marked

    def check_quietly(self) -> list[LostRecord]:
        """:meth:`check`; a failure (Prefect unreachable) is only logged, once until a look
        succeeds again."""
        try:
            marked = self.check()
        except Exception as exc:
            if not self._failing:
                log.warning("lab %s: could not look for lost workers: %s", self.prefect.name, exc)
            self._failing = True
            return []
        if self._failing:
            log.info("lab %s: looking for lost workers again", self.prefect.name)
        self._failing = False
        return marked

    def mark(self, info: WorkerAnnouncement, silent_for: float) -> LostRecord | None:
        """Mark worker ``info`` lost, unless another watcher does (then None)."""
        record = LostRecord(
            id=info.id,
            lab=self.prefect.name,
            host=info.host,
            pid=info.pid,
            by=self.by,
            silent_for=round(silent_for, 1),
            heartbeat=info.heartbeat,
        )
        if not self.prefect.mark_lost(record):
            log.info("worker %s is lost; another watcher marks it", info.id)
            return None
        # its devices and announcement first: whoever sees its experiments crashed finds the
        # lab free of it
        release(self.prefect, info)
        crashed = crash_experiments(self.prefect, info, self.by, silent_for, self.run_uids)
        record.experiments = [e.id for e in crashed]
        record.done = True
        try:
            self.prefect.update_lost(record)
        except Exception as exc:
            log.warning("could not complete the lost record of worker %s: %s", info.id, exc)
        log.warning(
            "lab %s: worker %s lost (no heartbeat for %.0f s); crashed: %s",
            self.prefect.name,
            info.id,
            silent_for,
            ", ".join(record.experiments) or "none",
        )
        if self.on_lost is not None:
            try:
                self.on_lost(info, crashed)
            except Exception:
                log.exception("the lost-worker hook failed for worker %s", info.id)
        self._prune()
        return record

    def _prune(self) -> None:
        """Remove lost records older than :data:`LOST_KEEP`."""
        limit = datetime.now(UTC) - timedelta(seconds=LOST_KEEP)
        for record in self.prefect.lost_workers():
            try:
                old = datetime.fromisoformat(record.at) < limit
            except ValueError:
                old = True
            if old:
                self.prefect.forget_lost(record.id)


class LostWorkerWatcher:
    """:class:`LostWorkers` checked on a daemon thread every ``interval`` s until :meth:`stop`
    (the gateway runs one per lab it serves)."""

    def __init__(
        self,
        lost: LostWorkers,
        name: str = "remotelab-lost-workers",
        also: Sequence[Callable[[], object]] = (),
    ):
        self.lost = lost
        #: further checks of the lab made on the same beat (each quiet about its failures)
        self.also = list(also)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> LostWorkerWatcher:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.lost.interval):
            self.lost.check_quietly()
            for check in self.also:
                check()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


def notifying(notifier: Notifier) -> OnLost:
    """An ``on_lost`` hook that tells ``notifier``: the worker lost (a lab-wide event), and
    each experiment marked crashed (its submitter's)."""

    def told(info: WorkerAnnouncement, crashed: list[Experiment]) -> None:
        names = ", ".join(e.id for e in crashed) or "none"
        notifier.send(
            Event(
                kind=EventKind.worker_lost,
                lab=info.lab,
                worker=info.id,
                message=f"worker {info.id} on {info.host or '?'} was lost: its heartbeat "
                f"stopped; experiments marked crashed: {names}",
            )
        )
        for exp in crashed:
            notifier.send(
                Event(
                    kind=EventKind.experiment_crashed,
                    lab=exp.lab or info.lab,
                    experiment_id=exp.id,
                    submitter=exp.submitter or None,
                    plan=exp.plan,
                    worker=info.id,
                    message=exp.message or f"its worker {info.id} was lost",
                )
            )

    return told


__all__ = [
    "ACTIVE_TYPES",
    "LOST_KEEP",
    "HeartbeatWatch",
    "LostWorkerWatcher",
    "LostWorkers",
    "OnLost",
    "RunUids",
    "check_interval",
    "crash",
    "crash_experiments",
    "notifying",
    "release",
    "store_run_uids",
]
