"""A state change that must follow a known state, on Prefect (which has no compare-and-set).

Prefect accepts many transitions without ``force`` that overwrite another actor's newer state:
``Scheduled`` over a worker's claim (Pending), over ``Running`` or over ``Cancelled``. So every
state change remotelab makes on a waiting run is checked *after* the fact: the change is made,
the run's state history is read (Prefect mints state timestamps on the server, so the history
is in order), and the state immediately before ours must be the one we meant to leave (by id,
or of a kind). If it is not, another actor acted in between: the state ours replaced is put back
(only if ours is still the current one) and :class:`StateChanged` (an
:class:`~remotelab.errors.ExperimentStateError`, 409 at the gateway) is raised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from uuid import UUID

from prefect.states import State

from remotelab.errors import ExperimentStateError
from remotelab.queue.edit_hold import held_for_edit
from remotelab.queue.models import state_of

if TYPE_CHECKING:
    from remotelab.queue.prefect_lab import LabOnPrefect

#: what the state before ours must be: its id, or a test on it
Expected = UUID | Callable[[State], bool]


class StateChanged(ExperimentStateError):
    """A state change met another actor's newer state: refused by Prefect, or made but then
    undone. ``replaced`` is the state ours replaced (None if Prefect refused ours)."""

    def __init__(self, message: str, *, replaced: State | None = None):
        super().__init__(message)
        self.replaced = replaced


def describe(state: State | None) -> str:
    """What an experiment in Prefect state ``state`` is, in a word or two."""
    if state is None:
        return "gone"
    if held_for_edit(state):
        return "being edited"
    return state_of(state.type.value, state.name).value


def copy_of(state: State) -> State:
    """A new state like ``state`` (to put it back)."""
    return State(
        type=state.type,
        name=state.name,
        message=state.message,
        state_details=state.state_details.model_copy(),
    )


def propose(lab: LabOnPrefect, run_id: UUID, state: State, *, force: bool = False) -> State:
    """Set ``state``; the state as Prefect recorded it. :class:`StateChanged` if refused."""
    result = lab.set_state(run_id, state, force=force)
    if not result.accepted or result.state is None:
        raise StateChanged(
            f"experiment {run_id}: Prefect refused {state.type.value}: {result.reason}"
        )
    return result.state


def confirm(lab: LabOnPrefect, run_id: UUID, mine: State, expected: Expected) -> State:
    """Check that the state before ``mine`` (ours, just set) is ``expected``; return it.

    Otherwise another actor changed the run between our read and our write: the state ours
    replaced is put back if ours is still current, and :class:`StateChanged` is raised.
    """
    states = lab.history(run_id)
    at = next((i for i, st in enumerate(states) if st.id == mine.id), None)
    replaced = states[at - 1] if at else None
    if replaced is not None:
        ok = replaced.id == expected if isinstance(expected, UUID) else expected(replaced)
        if ok:
            return replaced
        if at == len(states) - 1:  # nobody acted since ours: what we overwrote goes back
            lab.set_state(run_id, copy_of(replaced), force=True)
    raise StateChanged(
        f"experiment {run_id} became {describe(replaced)} meanwhile; it was left so",
        replaced=replaced,
    )


def set_state_after(
    lab: LabOnPrefect, run_id: UUID, state: State, expected: Expected, *, force: bool = False
) -> tuple[State, State]:
    """Set ``state`` on the run only as the successor of ``expected`` (see :func:`confirm`):
    ours and the state it replaced, or :class:`StateChanged` with the run left as another
    actor made it."""
    mine = propose(lab, run_id, state, force=force)
    return mine, confirm(lab, run_id, mine, expected)


__all__ = [
    "Expected",
    "StateChanged",
    "confirm",
    "copy_of",
    "describe",
    "propose",
    "set_state_after",
]
