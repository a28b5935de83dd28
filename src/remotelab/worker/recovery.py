"""What a worker puts right for others: experiments left running by a dead worker, and
queued runs left held by an edit whose editor died.

:func:`recover` marks Crashed the lab's active experiments whose worker is gone (at start-up:
their documents are kept, they are not re-run). :class:`StaleHolds` puts back in the queue a
run an edit has held longer than a grace period (:mod:`remotelab.queue.edit_hold`).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from prefect.client.schemas.objects import StateType

from remotelab.queue import transitions
from remotelab.queue.announcement import WorkerAnnouncement
from remotelab.queue.device_slots import LEASE_SECONDS
from remotelab.queue.edit_hold import held_for_edit, stale_hold_successor
from remotelab.queue.lost import ACTIVE_TYPES, LostWorkers, OnLost, RunUids, crash, release
from remotelab.queue.messages import AWAITING_APPROVAL, worker_tag
from remotelab.queue.models import Experiment
from remotelab.queue.prefect_lab import LabOnPrefect
from remotelab.queue.transitions import StateChanged

log = logging.getLogger("remotelab.worker")


def recover(
    prefect: LabOnPrefect,
    worker_id: str,
    *,
    run_uids: RunUids | None = None,
    on_lost: OnLost | None = None,
) -> list[Experiment]:
    """Mark Crashed the lab's experiments still active whose worker is gone; those marked.

    A gone worker that still has an announcement is marked lost as a watcher would
    (:class:`~remotelab.queue.lost.LostWorkers`: once, whoever else notices it too). Every
    mark is a compare-and-set: an experiment another watcher marked, or that ended, is left
    as it is.
    """
    crashed: list[Experiment] = []
    by = f"worker {worker_id} at start-up"
    marker = LostWorkers(
        prefect, by, lost_after=0.0, own_id=worker_id, run_uids=run_uids, on_lost=on_lost
    )
    marked: dict[str, bool] = {}  # gone worker → whether this call marked it lost
    for run in prefect.runs(ACTIVE_TYPES):
        state = run.state
        if state is None or (state.type == StateType.PAUSED and state.name == AWAITING_APPROVAL):
            continue
        if held_for_edit(state):
            continue  # held by an edit: it never started (see StaleHolds)
        owner = Experiment.from_flow_run(run).worker
        if owner == worker_id or marked.get(owner or ""):
            continue
        if owner is not None and owner not in marked:
            info = prefect.announcement(owner)
            if info is not None and info.is_alive():
                continue
            if info is not None:
                record = marker.mark(info, heartbeat_age(info))
                marked[owner] = record is not None
                if record is not None:
                    crashed += [
                        Experiment.from_flow_run(prefect.read_run(e)) for e in record.experiments
                    ]
                    continue
        if owner is not None and marked.get(owner) is False:
            other = prefect.lost(owner)
            if other is not None and not other.done:
                continue  # another watcher is marking it now
        message = (
            f"{worker_tag(owner or 'unknown')} crashed: its worker ended without finishing it "
            f"(found by {by}); documents it emitted are kept; not re-run"
        )
        if crash(prefect, run.id, state, message):
            crashed.append(Experiment.from_flow_run(prefect.read_run(run.id)))
            log.warning("experiment %s was left %s by a dead worker: crashed", run.id, state.name)
    return crashed


def heartbeat_age(info: WorkerAnnouncement) -> float:
    """Seconds since a worker's last heartbeat, by this host's clock (0 if unknown)."""
    try:
        beat = datetime.fromisoformat(info.heartbeat)
    except ValueError:
        return 0.0
    return max(0.0, (datetime.now(UTC) - beat).total_seconds())


#: a dead worker: its leases given back, its announcement removed
forget = release


def forget_dead_workers(prefect: LabOnPrefect, worker_id: str) -> list[str]:
    """Forget (:func:`forget`) the lab's workers that are gone: on this host, their process
    ended; elsewhere, silent for as long as a device lease lasts (Prefect has expired their
    leases by then: a worker merely cut off for a moment keeps its devices). Their ids."""
    gone = []
    for info in prefect.workers(live=False):
        if info.id != worker_id and not info.is_alive(stale_after=LEASE_SECONDS):
            forget(prefect, info)
            gone.append(info.id)
    return gone


class StaleHolds:
    """Restores the lab's runs an edit has held longer than ``grace`` seconds.

    An edit holds a queued run Pending (``[editing] …``) for the moment of the change; if its
    editor dies or loses Prefect before letting go, the run would wait for ever. A hold is
    timed on this worker's own clock from when it first saw that very state (no clock is
    compared with Prefect's), and is restored only if that same state still directly
    precedes the restoring one (:mod:`~remotelab.queue.transitions`).
    """

    def __init__(self, prefect: LabOnPrefect, grace: float, check_interval: float):
        self.prefect = prefect
        self.grace = grace
        self.check_interval = check_interval
        #: edit holds seen: state id → when first seen (this worker's monotonic clock)
        self.seen: dict[Any, float] = {}
        self.checked_at: float | None = None
        self._lock = threading.Lock()

    def due(self) -> bool:
        """Whether ``check_interval`` has passed since the last look."""
        now = time.monotonic()
        return self.checked_at is None or now - self.checked_at >= self.check_interval

    def check(self) -> list[Experiment]:
        """Restore stale holds if a look is due (a failure is only logged)."""
        if not self.due():
            return []
        try:
            return self.restore()
        except Exception as exc:
            log.warning("could not look for stale edit holds: %s", exc)
            return []

    def restore(self) -> list[Experiment]:
        """Put back the runs held longer than the grace period; those restored."""
        with self._lock:
            self.checked_at = time.monotonic()
            return self._restore()

    def _restore(self) -> list[Experiment]:
        held = self.prefect.runs([StateType.PENDING])
        now = time.monotonic()
        self.seen = {
            r.state.id: self.seen.get(r.state.id, now) for r in held if r.state is not None
        }
        restored = []
        for run in held:
            hold = run.state
            if hold is None or not held_for_edit(hold) or now - self.seen[hold.id] < self.grace:
                continue
            states = self.prefect.history(run.id)
            at = next((i for i, st in enumerate(states) if st.id == hold.id), None)
            if at is None or at != len(states) - 1:
                continue  # let go (or claimed) since it was read
            before = states[at - 1] if at else None
            edits = len((run.parameters or {}).get("edits") or [])
            state, force = stale_hold_successor(hold, before, edits, run.expected_start_time)
            try:
                transitions.set_state_after(self.prefect, run.id, state, hold.id, force=force)
            except StateChanged as exc:
                log.info("experiment %s: stale hold not restored: %s", run.id, exc)
                continue
            log.warning(
                "experiment %s was held by an edit for %.0f s: %s",
                run.id,
                now - self.seen[hold.id],
                "waits for approval again" if force else "back in the queue",
            )
            restored.append(Experiment.from_flow_run(self.prefect.read_run(run.id)))
        return restored


__all__ = ["ACTIVE_TYPES", "StaleHolds", "recover"]
