"""Ordering a lab's queue: moving a queued experiment and changing its priority.

A queued experiment's place is its Scheduled time within its priority. A move takes the same
hold an edit takes (:mod:`remotelab.queue.edit_hold`), so it never overwrites a worker's
claim, a cancel or an edit. :class:`Ordering` is the part of
:class:`~remotelab.queue.ExperimentQueue` that does it.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from prefect.states import Scheduled, State

from remotelab.errors import ExperimentStateError, QueueError
from remotelab.queue import signatures, transitions
from remotelab.queue.edit_hold import EditHold, move_mark
from remotelab.queue.editing import being_edited
from remotelab.queue.models import Experiment, ExperimentState, Priority, priority_tag
from remotelab.queue.transitions import StateChanged

if TYPE_CHECKING:
    from remotelab.keys.signing import Signer
    from remotelab.queue.prefect_lab import LabOnPrefect


class Ordering:
    """``move`` and ``prioritise``; mixed into :class:`~remotelab.queue.ExperimentQueue`."""

    name: str
    prefect: LabOnPrefect

    if TYPE_CHECKING:  # provided by ExperimentQueue

        @property
        def signer(self) -> Signer: ...

        def get(self, experiment_id: str | UUID) -> Experiment: ...

        def waiting(self) -> list[Experiment]: ...

        def wake(self) -> None: ...

        def _hold(self, run: Any, mark: str, *, what: str) -> EditHold: ...

        def _release_edit(
            self, experiment_id: str, hold: EditHold, by: str, *, reapprove: bool
        ) -> bool: ...

    def move(
        self,
        experiment_id: str,
        *,
        to: str | None = None,
        behind: str | None = None,
    ) -> Experiment:
        """Move a queued experiment ``to="front"``, ``to="back"`` or ``behind=<other id>``.

        It takes the priority of the place it moves to (shown by its ``priority:`` tag).
        """
        if (to is None) == (behind is None):
            raise QueueError("say where to move: to='front', to='back' or behind=<experiment id>")
        if to not in (None, "front", "back"):
            raise QueueError(f"unknown place {to!r}; use 'front', 'back' or behind=<id>")
        exp = self.get(experiment_id)
        self._require_queued(exp, "can move")
        others = [e for e in self.waiting() if e.id != exp.id]
        tick = timedelta(milliseconds=1)
        if not others:
            return exp
        far = datetime.now(UTC)  # (a queued experiment always has its Scheduled time)
        if to == "front":
            first = others[0]
            prio, when = first.priority, (first.scheduled or far) - tick
        elif to == "back":
            last = others[-1]
            prio, when = last.priority, (last.scheduled or far) + tick
        else:
            idx = next((i for i, e in enumerate(others) if e.id == str(behind)), None)
            if idx is None:
                raise ExperimentStateError(f"experiment {behind} is not queued in lab {self.name}")
            ref = others[idx]
            prio = ref.priority
            ref_at = ref.scheduled or far
            nxt = others[idx + 1] if idx + 1 < len(others) else None
            nxt_at = nxt.scheduled if nxt is not None else None
            if nxt is not None and nxt_at is not None and nxt.priority == prio and nxt_at > ref_at:
                when = ref_at + (nxt_at - ref_at) / 2
                if when <= ref_at or when >= nxt_at:
                    # no room left between the two: push the rest of the class back a little
                    later = [e for e in others[idx + 1 :] if e.priority == prio]
                    for other in later:
                        if other.held_for_edit:
                            raise being_edited(other.id)
                    for k, other in enumerate(later):
                        self._reschedule(
                            other, other.priority, (other.scheduled or far) + tick * (k + 2)
                        )
                    when = ref_at + tick
            else:
                when = ref_at + tick
        return self._reschedule(exp, prio, when)

    def prioritise(self, experiment_id: str, priority: Priority | str) -> Experiment:
        """Give a queued experiment ``priority``; it goes behind that priority's last one."""
        exp = self.get(experiment_id)
        self._require_queued(exp, "change priority")
        priority = Priority(priority)
        same = [e for e in self.waiting() if e.priority == priority and e.id != exp.id]
        if same:
            return self.move(exp.id, behind=same[-1].id)  # a move takes the place's priority
        if exp.priority == priority:
            return exp
        return self._reschedule(exp, priority, exp.scheduled or datetime.now(UTC))

    @staticmethod
    def _require_queued(exp: Experiment, what: str) -> None:
        """Refuse unless ``exp`` (as just read) is queued in Prefect's own Scheduled state: a
        run held by an edit reads as queued, but re-scheduling it would end the edit's hold."""
        if exp.held_for_edit:
            raise being_edited(exp.id)
        if exp.state != ExperimentState.queued:
            raise ExperimentStateError(
                f"experiment {exp.id} is {exp.state.value}; only queued ones {what}"
            )

    def _reschedule(self, exp: Experiment, prio: Priority, when: datetime) -> Experiment:
        """Give a queued experiment (``exp``, as read) a new place and priority.

        It takes the lock an edit takes first (Scheduled → Pending, ``[editing] being moved``),
        which Prefect refuses over a worker's claim, a run or another hold, and checks that the
        state it replaced was an unheld Scheduled; the new Scheduled must then follow that hold
        (:mod:`~remotelab.queue.transitions`). A cancel or a claim that lands meanwhile wins.
        """
        self._require_queued(exp, "can move")
        run_id = UUID(exp.id)
        run = self.prefect.read_run(run_id)
        hold = self._hold(run, move_mark(), what="the move")
        tags = list(run.tags)
        try:
            if prio != exp.priority:  # its priority is signed: tags and signature at once
                moved = [t for t in tags if not t.startswith("priority:")] + [priority_tag(prio)]
                parameters = signatures.resigned(
                    self.signer, self.name, run, run.parameters or {}, priority=prio.value
                )
                self.prefect.update_run(run_id, parameters=parameters, tags=moved)
            mine: State = Scheduled(scheduled_time=when, message=hold.before.message or None)
            if hold.held is None:  # pragma: no cover (a hold taken always knows its state)
                raise ExperimentStateError(f"experiment {exp.id}: the move's hold is unknown")
            transitions.set_state_after(self.prefect, run_id, mine, hold.held)
        except Exception as exc:
            with contextlib.suppress(Exception):
                if prio != exp.priority:
                    self.prefect.update_run(run_id, parameters=run.parameters or {}, tags=tags)
                self._release_edit(exp.id, hold, "", reapprove=False)
            if isinstance(exc, StateChanged):
                raise ExperimentStateError(
                    f"experiment {exp.id} could not be moved: it became "
                    f"{transitions.describe(exc.replaced)} meanwhile; it was left so"
                ) from None
            raise
        self.wake()
        return self.get(exp.id)


__all__ = ["Ordering"]
