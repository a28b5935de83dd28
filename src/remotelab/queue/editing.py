"""Editing a waiting experiment's parameters, safely against the lab's workers.

A queued run is held out of the workers' reach while its parameters change: it goes
Scheduled → Pending (message ``[editing] …``), which Prefect's orchestration refuses a
worker's claim on, and back. A run awaiting approval needs no hold (no worker takes it);
the edit stands if the same awaiting state is still current after the change.
:class:`Editing` is the part of :class:`~remotelab.queue.ExperimentQueue` that does it.
"""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from prefect.client.schemas.objects import StateType
from prefect.states import Paused, Scheduled, State

from remotelab.errors import ExperimentStateError, QueueError
from remotelab.queue import samples, signatures, transitions
from remotelab.queue.edit_hold import EditHold, edit_mark, hold_state
from remotelab.queue.messages import AWAITING_APPROVAL
from remotelab.queue.models import (
    WAITING,
    Experiment,
    ExperimentState,
    devices_of,
    needs_approval,
)
from remotelab.queue.transitions import StateChanged

if TYPE_CHECKING:
    from remotelab.keys.signing import Signer
    from remotelab.queue.prefect_lab import LabOnPrefect
    from remotelab.queue.service import PlanRegistryLike

#: how many times an edit tries to put the run it held back in the queue
RELEASE_TRIES = 4


def being_edited(experiment_id: str, *, other: bool = False) -> ExperimentStateError:
    """The conflict an operation on a run held by an edit meets (409 at the gateway)."""
    who = " by someone else" if other else ""
    return ExperimentStateError(f"experiment {experiment_id} is being edited{who}; retry")


class Editing:
    """``edit`` and the hold it takes; mixed into :class:`~remotelab.queue.ExperimentQueue`,
    whose Prefect adapter, registry and reads it uses."""

    lab: Any
    name: str
    prefect: LabOnPrefect

    if TYPE_CHECKING:  # provided by ExperimentQueue

        @property
        def signer(self) -> Signer: ...

        @property
        def registry(self) -> PlanRegistryLike: ...

        def get(self, experiment_id: str | UUID) -> Experiment: ...

        def _read_run(self, experiment_id: str | UUID) -> tuple[Any, Experiment]: ...

        def wake(self) -> None: ...

    def edit(
        self,
        experiment_id: str,
        params: dict[str, Any],
        *,
        by: str,
        role: str = "researcher",
    ) -> Experiment:
        """Change the parameters of an experiment that has not started (queued or waiting
        for approval); returns it updated.

        ``params`` are merged into the experiment's: a key given replaces that parameter, a
        key given as ``None`` removes it (the plan's default applies again), keys not given
        stay; at least one must be given (:class:`QueueError` otherwise). The result is
        validated by the lab's plan registry for ``role`` (every problem named,
        :class:`PlanValidationError`) before anything changes. The experiment keeps its place
        in the queue; ``parameters.edits`` records who edited it, when and the parameters
        before. If ``role``'s submissions of the plan need a manager's approval, an edited
        experiment waits for approval again (only if the edit succeeded).

        A worker cannot claim the experiment while it is edited (it is held in a short
        Pending state that Prefect's orchestration refuses a second claim on); an
        experiment that started (or ended) first is refused with
        :class:`ExperimentStateError` and left as it is, as is one another edit holds.
        """
        if not isinstance(params, dict):
            raise QueueError(f"parameters must be an object, not {params!r}")
        if not params:
            raise QueueError(
                "give at least one parameter to change (a value, or null to go back to the "
                "plan's default)"
            )
        run, exp = self._read_run(experiment_id)
        if exp.held_for_edit:
            raise being_edited(exp.id, other=True)
        if exp.state not in WAITING:
            raise ExperimentStateError(
                f"experiment {experiment_id} is {exp.state.value}; only an experiment that has "
                "not started (queued or waiting for approval) can be edited"
            )
        merged = {**exp.params, **params}
        merged = {k: v for k, v in merged.items() if v is not None}
        try:
            json.dumps(merged)
        except TypeError as exc:
            raise QueueError(f"parameters must be JSON values: {exc}") from None
        definition = getattr(self.registry, "definition", lambda _: None)(exp.plan)
        if samples.consumed_sample(definition, merged):
            samples.note_used_up(self)  # validation refuses a sample already used up
        validated = self.registry.validate(exp.plan, merged, lab=self.lab, role=role)
        edits = [
            *exp.edits,
            {"by": by, "role": role, "at": datetime.now(UTC).isoformat(), "previous": exp.params},
        ]
        parameters = {
            **(run.parameters or {}),
            "params": merged,
            "edits": edits,
            "devices": devices_of(validated),
        }
        if exp.state == ExperimentState.waiting_for_approval:
            parameters = self._signed(run, parameters, signatures.APPROVAL_REQUIRED)
            return self._edit_awaiting(run, exp, parameters, by=by)
        reapprove = needs_approval(self.lab, exp.plan, role)
        approval = signatures.effective_approval(run, self.name, self.signer.verifier())
        parameters = self._signed(
            run, parameters, signatures.APPROVAL_REQUIRED if reapprove else approval
        )
        hold = self._hold_for_edit(run, by, reapprove_after=len(exp.edits) if reapprove else None)
        updated = False
        try:
            held = self.prefect.read_run(exp.id)
            if (held.parameters or {}).get("params") != exp.params:
                raise ExperimentStateError(
                    f"experiment {exp.id} was edited by someone else meanwhile; nothing was "
                    "changed: read it again and retry"
                )
            self.prefect.update_run(exp.id, parameters=parameters)
            updated = True
        finally:
            # a failed edit changed nothing: the run goes back as it was, approval and all
            kept = self._release_edit(exp.id, hold, by, reapprove=reapprove and updated)
        now = self.get(exp.id)
        if not kept and now.state not in (*WAITING, ExperimentState.cancelled):
            raise ExperimentStateError(
                f"experiment {exp.id} lost the edit's hold while it was edited and is now "
                f"{now.state.value}; it may run with either parameter set: see its start document"
            )
        if not reapprove:
            self.wake()
        return now

    def _signed(self, run: Any, parameters: dict[str, Any], approval: str) -> dict[str, Any]:
        """The edited ``parameters`` of ``run`` signed (see :mod:`remotelab.queue.signatures`)."""
        return signatures.resigned(self.signer, self.name, run, parameters, approval=approval)

    def _hold_for_edit(self, run: Any, by: str, *, reapprove_after: int | None = None) -> EditHold:
        """Take a queued run (``run``, as just read) out of the workers' reach for an edit.

        The run goes Scheduled → Pending (as a worker's claim, message ``[editing] …``):
        Prefect refuses it if a worker or another edit holds the run first, and refuses a
        worker's claim while it holds. The hold keeps the run's scheduled time, so listings
        show it in its place. ``reapprove_after``: the edit needs a manager's approval again
        once it changed the parameters, and the run has that many ``edits`` before it; the
        hold says so, for a worker that restores it if the edit never ends.
        """
        return self._hold(run, edit_mark(by, reapprove_after=reapprove_after), what="the edit")

    def _hold(self, run: Any, mark: str, *, what: str) -> EditHold:
        """Hold a queued run Pending with message ``mark`` (see :meth:`_hold_for_edit`)."""
        run_id = UUID(str(run.id))
        when = run.state.state_details.scheduled_time if run.state is not None else None
        try:
            mine = transitions.propose(self.prefect, run_id, hold_state(mark, when))
        except StateChanged:
            now = self.get(run_id)
            if now.state == ExperimentState.queued:  # another edit (or a move) holds it
                raise being_edited(now.id, other=what == "the edit") from None
            raise ExperimentStateError(
                f"experiment {now.id} is {now.state.value}: it started or ended before "
                f"{what}; nothing was changed"
            ) from None
        try:
            before = transitions.confirm(
                self.prefect, run_id, mine, lambda st: st.type == StateType.SCHEDULED
            )
        except StateChanged:  # a finished run may go back to Pending: it was put back
            raise ExperimentStateError(
                f"experiment {run_id} is no longer queued; nothing was changed"
            ) from None
        except Exception:
            with contextlib.suppress(Exception):  # let go (a worker restores it if this fails)
                self._release_edit(str(run_id), EditHold(run.state, mark), "", reapprove=False)
            raise
        return EditHold(before, mark, mine.id)

    def _release_edit(
        self, experiment_id: str, hold: EditHold, by: str, *, reapprove: bool
    ) -> bool:
        """Put a run an edit held back where it was in the queue (``reapprove``: back to wait
        for approval). False if the hold was gone (the run was cancelled meanwhile, or a worker
        restored it as a stale hold): the run is left as it is.

        The new state must directly follow the hold (:mod:`~remotelab.queue.transitions`): a
        cancel that lands between the check and the change is put back. The change is tried
        :data:`RELEASE_TRIES` times; a hold that still cannot be released is restored by the
        lab's workers once it is stale.
        """
        before = hold.before
        if reapprove:
            state: State = Paused(
                name=AWAITING_APPROVAL,
                message=f"edited by {by}; waits for a manager's approval again",
            )
        else:
            state = Scheduled(
                scheduled_time=before.state_details.scheduled_time,
                message=before.message or f"edited by {by}",
            )
        run_id = UUID(str(experiment_id))
        for attempt in range(RELEASE_TRIES):
            try:
                run = self.prefect.read_run(run_id)
                if run.state is None or run.state.message != hold.mark:
                    return False
                # Pending → Paused is not a transition Prefect orchestrates: forced, and undone
                # by the check if it did not follow our hold
                transitions.set_state_after(
                    self.prefect, run_id, state, run.state.id, force=reapprove
                )
                return True
            except StateChanged:
                return False
            except Exception:
                if attempt == RELEASE_TRIES - 1:
                    raise
                time.sleep(0.1 * 2**attempt)
        return False  # pragma: no cover (the loop returns or raises)

    def _edit_awaiting(self, run: Any, exp: Experiment, parameters: dict, *, by: str) -> Experiment:
        """Edit a run that waits for approval (``run``, as just read): no worker can take it
        until it is approved, so the edit stands if that same awaiting state is still the
        run's state after the change (a state, once left, never becomes current again).
        If it was approved, rejected or cancelled meanwhile the change is undone (held away
        from workers if it is queued now) and the edit refused."""
        run_id = UUID(exp.id)
        waiting_state = run.state.id
        self.prefect.update_run(run_id, parameters=parameters)
        now = self.prefect.read_run(run_id)
        if now.state is not None and now.state.id == waiting_state:
            return Experiment.from_flow_run(now)
        hold = None
        if now.state is not None and now.state.type == StateType.SCHEDULED:
            with contextlib.suppress(ExperimentStateError):
                # approved meanwhile: if this edit dies before undoing its change, the run
                # waits for approval again rather than run unapproved parameters
                hold = self._hold_for_edit(now, by, reapprove_after=len(exp.edits))
        try:
            current = self.prefect.read_run(run_id)
            if (current.parameters or {}).get("edits") == parameters["edits"]:
                self.prefect.update_run(run_id, parameters=run.parameters or {})
        finally:
            if hold is not None:
                self._release_edit(exp.id, hold, by, reapprove=False)
        after = self.get(exp.id)
        untouched = hold is not None or (
            now.state is not None and now.state.type in (StateType.PAUSED, StateType.CANCELLED)
        )
        if untouched:
            raise ExperimentStateError(
                f"experiment {exp.id} became {after.state.value} while it was edited; nothing "
                "was changed: read it again and retry"
            )
        raise ExperimentStateError(
            f"experiment {exp.id} started while it was edited ({after.state.value}); the edit "
            "was undone, but it may run with either parameter set: see its start document"
        )


__all__ = ["RELEASE_TRIES", "Editing", "being_edited"]
