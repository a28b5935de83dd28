"""An edit's hold on a queued run: how it is written into Prefect, read back, and undone.

While a waiting experiment's parameters change (or it is moved), it is held out of the
workers' reach in a Pending state whose message starts with :data:`EDITING`. A hold for an
edit that needs a manager's approval again carries :data:`REAPPROVE` with the number of edits
the run had before it. Everything that writes or reads these marks is here: the queue takes
and releases holds (:mod:`remotelab.queue.editing`), listings show a held run as queued, and
a worker puts back a hold whose editor died (:func:`stale_hold_successor`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from prefect.client.schemas.objects import StateDetails, StateType
from prefect.states import Paused, Pending, Scheduled, State

from remotelab.queue.messages import AWAITING_APPROVAL

#: the message prefix of the short Pending state an edit holds a queued run in
EDITING = "[editing]"
#: in a hold's message: the edit needs approval again once it changed the parameters
#: (``[approval again after edits: <n>]``, n = the run's ``edits`` before this one)
REAPPROVE = "[approval again after edits:"
_REAPPROVE_RE = re.compile(re.escape(REAPPROVE) + r" (\d+)\]")


def edit_mark(by: str, *, reapprove_after: int | None = None) -> str:
    """The message of an edit's hold, unique to this edit."""
    mark = f"{EDITING} being edited by {by} ({uuid4().hex[:12]})"
    if reapprove_after is not None:
        mark += f" {REAPPROVE} {reapprove_after}]"
    return mark


def move_mark() -> str:
    """The message of a move's hold, unique to this move."""
    return f"{EDITING} being moved ({uuid4().hex[:12]})"


def hold_state(mark: str, scheduled_time: Any) -> State:
    """The Pending state that holds a queued run (keeping its place in the queue)."""
    return Pending(message=mark, state_details=StateDetails(scheduled_time=scheduled_time))


def held_for_edit(state: Any) -> bool:
    """Whether a Prefect state is an edit's hold on a queued run (Pending ``[editing] …``)."""
    if state is None:
        return False
    stype = getattr(state.type, "value", state.type)
    return stype == "PENDING" and (state.message or "").startswith(EDITING)


def reapproval_after(message: str | None) -> int | None:
    """From a hold's message: how many ``edits`` the run had before an edit that needs a
    manager's approval again once it changes the parameters (None: it needs none)."""
    m = _REAPPROVE_RE.search(message or "")
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class EditHold:
    """An edit's hold on a queued run: the queued state it replaced, the hold's message and
    the hold's state id."""

    before: State
    mark: str
    held: UUID | None = None


def stale_hold_successor(
    hold: State, before: State | None, edits: int, expected_start: Any = None
) -> tuple[State, bool]:
    """The state a stale hold goes back to, and whether Prefect must be forced to take it.

    ``before`` is the state the hold replaced (from the run's history), ``edits`` how many
    edits the run records now. The run never started, so it is not crashed: it goes back to
    the queued state before the hold, in its place — or to wait for approval, if the hold
    says the edit needs it again and the edit did change the parameters.
    """
    after = reapproval_after(hold.message)
    if after is not None and edits > after:
        again: State = Paused(
            name=AWAITING_APPROVAL,
            message="edited by an edit that did not end; waits for a manager's approval again",
        )
        return again, True  # Pending → Paused is not a transition Prefect orchestrates
    if before is not None and before.type == StateType.SCHEDULED:
        return (
            Scheduled(
                scheduled_time=before.state_details.scheduled_time,
                message=before.message or "back in the queue after an edit that did not end",
            ),
            False,
        )
    return (  # no queued state before it (never the case for a hold an edit took)
        Scheduled(
            scheduled_time=hold.state_details.scheduled_time or expected_start,
            message="back in the queue after an edit that did not end",
        ),
        False,
    )


__all__ = [
    "EDITING",
    "REAPPROVE",
    "EditHold",
    "edit_mark",
    "held_for_edit",
    "hold_state",
    "move_mark",
    "reapproval_after",
    "stale_hold_successor",
]
