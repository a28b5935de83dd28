"""Claiming the lab's next experiment, through Prefect's own state orchestration.

A claim moves a queued run Scheduled → Pending, which Prefect refuses to all but one claimer,
so two workers never run the same experiment; then Pending → Running. Prefect lets a finished
run go back to Pending (a re-run), so a claim is checked against the run's history and let go
if the run was not queued any more. Every state message of the claim names the worker.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable
from typing import Generic, TypeVar
from uuid import UUID

from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.states import Cancelled, Pending, Running, State

from remotelab.keys.signing import Verifier
from remotelab.queue.messages import worker_tag
from remotelab.queue.models import Experiment, Priority, priority_tag
from remotelab.queue.prefect_lab import LabOnPrefect
from remotelab.queue.signatures import REFUSED, REFUSED_TAG, refusal
from remotelab.queue.transitions import copy_of

#: a queue shorter than this is read in one request and ordered by the worker
CLAIM_WINDOW = 20

T = TypeVar("T")


class Cached(Generic[T]):
    """A value read from Prefect, reused for ``ttl`` seconds or until :meth:`invalidate`.

    ``keep_empty``: reuse an empty (falsy) value too; if not, an empty value is read again.
    """

    def __init__(self, read: Callable[[], T], ttl: float, empty: T, *, keep_empty: bool = True):
        self._read = read
        self.ttl = ttl
        self.keep_empty = keep_empty
        self.value: T = empty
        self.read_at = -math.inf
        self.stale = True

    def get(self) -> T:
        fresh = not self.stale and time.monotonic() - self.read_at <= self.ttl
        if fresh and (self.value or self.keep_empty):
            return self.value
        at = time.monotonic()
        self.value = self._read()  # a failed read is tried again on next use
        self.stale, self.read_at = False, at
        return self.value

    def invalidate(self) -> None:
        """Read it again on next use."""
        self.stale = True

    def keep(self, value: T) -> None:
        """Use ``value`` from now on, until invalidated (a view of the queue taken earlier)."""
        self.value, self.stale, self.read_at = value, False, math.inf


class Claimer:
    """Claims queued runs of a lab for worker ``worker_id``.

    Whether the lab is held and the next few queued runs are read at most every
    ``poll_interval`` seconds, and again at once after :meth:`invalidate` (a wake-up, a hold
    or release message); Prefect still refuses a claim on a run that is no longer queued.
    A run the gateway did not sign as it is (``verifier``: the trusted submission keys) is
    never claimed: it is ended Cancelled, state :data:`~remotelab.queue.signatures.REFUSED`.
    """

    def __init__(
        self, prefect: LabOnPrefect, worker_id: str, poll_interval: float, verifier: Verifier
    ):
        self.prefect = prefect
        self.verifier = verifier
        self.worker_id = worker_id
        self.tag = worker_tag(worker_id)
        self.held: Cached[bool] = Cached(prefect.is_held, poll_interval, False)
        #: why this worker holds the lab itself (a fault Prefect has not been told of yet)
        self.fault: str | None = None
        self.queue: Cached[list[FlowRun]] = Cached(
            self._read_queue, poll_interval, [], keep_empty=False
        )

    def is_held(self) -> bool:
        """Whether the lab is held: in Prefect, or by this worker for a fault."""
        return self.fault is not None or self.held.get()

    def invalidate(self, *, held: bool = False) -> None:
        """Read the queue (``held``: and the lab's hold) again before the next claim."""
        self.queue.invalidate()
        if held:
            self.held.invalidate()

    def candidates(self) -> list[FlowRun]:
        """The next few queued runs of the lab, in the order they should run."""
        return list(self.queue.get())

    def _read_queue(self) -> list[FlowRun]:
        sort = FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC
        runs = self.prefect.runs([StateType.SCHEDULED], sort=sort, limit=CLAIM_WINDOW)
        if len(runs) >= CLAIM_WINDOW:  # a long queue: ask for the best of each priority
            for prio in Priority:
                runs = self.prefect.runs(
                    [StateType.SCHEDULED], tags=[priority_tag(prio)], sort=sort, limit=CLAIM_WINDOW
                )
                if runs:
                    break
        admitted = [r for r in runs if self.admitted(r)]
        return sorted(admitted, key=lambda r: Experiment.from_flow_run(r).order_key())

    def admitted(self, run: FlowRun) -> bool:
        """Whether the gateway signed ``run`` as it is; if not, it is refused (ended
        Cancelled, saying why) and False."""
        why = refusal(run, self.prefect.name, self.verifier)
        if why is None:
            return True
        message = f"{self.tag} refused to run it: {why}"
        if self.prefect.set_state(run.id, Cancelled(name=REFUSED, message=message)).accepted:
            self.prefect.update_run(run.id, tags=[*run.tags, REFUSED_TAG])
        return False

    def claim(self) -> FlowRun | None:
        """Claim the lab's next queued run (highest priority, then earliest), or None; the
        run as read after the claim (no edit can change it once it is ours)."""
        if self.is_held():
            return None
        for run in self.candidates():
            claimed = self.claim_one(run)
            if claimed is not None:
                return claimed
        return None

    def claim_one(self, run: FlowRun, *, start: bool = True) -> FlowRun | None:
        """Claim queued run ``run``: the run as read after the claim, or None if Prefect
        refused it (another worker took it, it was cancelled or edited meanwhile).

        With ``start=False`` the run is left Pending — ours: no other worker nor an edit can
        take it — and :meth:`start` moves it to Running (while its plan starts). The run is
        then not read again when the state the claim replaced is the one it was read in.
        """
        self.queue.value = [r for r in self.queue.value if r.id != run.id]
        if not self.prefect.set_state(run.id, Pending(message=f"{self.tag} claimed")).accepted:
            self.queue.invalidate()
            return None  # another worker took it, or it is not due yet
        states = self._was_queued(run.id)
        if states is None:
            self.queue.invalidate()
            return None
        if start and not self.start(run.id):
            return None
        if start or run.state is None or states[-2].id != run.state.id:
            run = self.prefect.read_run(run.id)  # as it is now: checked again
            return run if self.admitted(run) else None
        # the state our claim replaced is the one read (and checked) with the run
        return run.model_copy(update={"state": states[-1]})

    def start(self, run_id: UUID, *, settle: bool = True) -> bool:
        """Move a run this worker claimed to Running; False if Prefect refused (it was
        cancelled meanwhile: then, with ``settle``, it is ended Cancelled — without, the
        caller ends it, e.g. once a plan already started has been stopped and made safe)."""
        running: State = Running(
            message=f"{self.tag} running (pid {os.getpid()} on {socket.gethostname()})"
        )
        if not self.prefect.set_state(run_id, running).accepted:
            if settle:
                self._settle_refused(run_id)
            return False
        return True

    def let_go(self, run_id: str | UUID) -> bool:
        """Undo a claim left half-made (Prefect was lost mid-claim): if the run is still
        Pending as this worker claimed it, back to the state before; whether it was."""
        states = self.prefect.history(UUID(str(run_id)))
        last = states[-1] if states else None
        mine = f"{self.tag} claimed"
        if last is None or last.type != StateType.PENDING or (last.message or "") != mine:
            return False
        if len(states) < 2:
            return False
        self.prefect.set_state(run_id, copy_of(states[-2]), force=True)
        self.queue.invalidate()
        return True

    def _was_queued(self, run_id: UUID) -> list[State] | None:
        """The run's states if the run we just moved to Pending was still queued; if not
        (another worker finished it meanwhile), its state goes back and None."""
        states = self.prefect.history(run_id)
        if len(states) < 2 or states[-1].type != StateType.PENDING:
            return None
        before = states[-2]
        if before.type == StateType.SCHEDULED:
            return states
        self.prefect.set_state(run_id, copy_of(before), force=True)
        return None

    def _settle_refused(self, run_id: UUID) -> None:
        """A claimed run Prefect would not let run (cancelled meanwhile): end it cleanly."""
        state = self.prefect.read_run(run_id).state
        if state is not None and state.type == StateType.CANCELLING:
            self.prefect.set_state(
                run_id, Cancelled(message=state.message or "cancelled before it started")
            )


__all__ = ["CLAIM_WINDOW", "Cached", "Claimer"]
