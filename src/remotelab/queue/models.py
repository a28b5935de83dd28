"""The experiment (the queue item) and how it maps onto a Prefect flow run.

An experiment *is* a flow run of the lab's deployment. remotelab keeps its fields on the run:

- ``parameters``: ``plan``, ``params``, ``submitter``, ``role``, ``devices`` (what the plan
  will drive, as the registry computed it on submission or the last edit), and ``edits`` (who
  changed ``params`` while it waited, when, and what they were before), and ``audit_head``
  (the gateway's audit-log head when it accepted the submission);
- tags: ``lab:<lab>``, ``priority:<priority>``, ``plan:<plan>``, ``submitter:<name>``;
- labels: ``remotelab.run_uids``, ``remotelab.exit_status``, ``remotelab.worker``;
- state names and messages: ``AwaitingApproval``, ``AwaitingOperator`` (with the question), the
  error of a failed run, the worker that ran it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from prefect.client.schemas.objects import StateType
from pydantic import BaseModel, Field, PrivateAttr

from remotelab.queue.edit_hold import EDITING, held_for_edit
from remotelab.queue.messages import (
    AWAITING_APPROVAL,
    AWAITING_OPERATOR,
    PAUSED_NAME,
    read_record,
)

#: the Prefect flow every experiment is a run of
FLOW_NAME = "remotelab-experiment"


class Priority(StrEnum):
    """How soon an experiment runs: urgent before normal before low; FIFO within one."""

    urgent = "urgent"
    normal = "normal"
    low = "low"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Priority.urgent: 1, Priority.normal: 2, Priority.low: 3}


class ExperimentState(StrEnum):
    """Where an experiment is in its life."""

    waiting_for_approval = "waiting_for_approval"
    queued = "queued"
    running = "running"
    paused = "paused"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    crashed = "crashed"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = {
    ExperimentState.completed,
    ExperimentState.failed,
    ExperimentState.cancelled,
    ExperimentState.crashed,
}


#: the Prefect state types of each experiment state (for filters)
STATE_TYPES: dict[ExperimentState, tuple[StateType, ...]] = {
    ExperimentState.waiting_for_approval: (StateType.PAUSED,),
    # a queued run held for a moment by an edit is Pending (``[editing] …``)
    ExperimentState.queued: (StateType.SCHEDULED, StateType.PENDING),
    ExperimentState.running: (StateType.PENDING, StateType.RUNNING, StateType.CANCELLING),
    ExperimentState.paused: (StateType.PAUSED,),
    ExperimentState.completed: (StateType.COMPLETED,),
    ExperimentState.failed: (StateType.FAILED,),
    ExperimentState.cancelled: (StateType.CANCELLED,),
    ExperimentState.crashed: (StateType.CRASHED,),
}


def prefect_types(states: Iterable[ExperimentState | str]) -> list[StateType]:
    """The Prefect state types experiments in ``states`` can be in (a superset: a Paused
    run may be paused or waiting for approval)."""
    found = {t for s in states for t in STATE_TYPES[ExperimentState(s)]}
    return sorted(found, key=lambda t: t.value)


def pool_name(lab: str) -> str:
    """The Prefect work pool of a lab."""
    return f"remotelab-{lab}"


def lab_tag(lab: str) -> str:
    return f"lab:{lab}"


def priority_tag(priority: Priority | str) -> str:
    return f"priority:{Priority(priority).value}"


def state_of(state_type: str, state_name: str | None) -> ExperimentState:
    """The experiment state a Prefect state (type, name) stands for."""
    t = state_type.upper()
    if t == "SCHEDULED":
        return ExperimentState.queued
    if t == "PAUSED":
        if state_name == AWAITING_APPROVAL:
            return ExperimentState.waiting_for_approval
        return ExperimentState.paused
    if t in ("PENDING", "RUNNING", "CANCELLING"):
        return ExperimentState.running
    return {
        "COMPLETED": ExperimentState.completed,
        "FAILED": ExperimentState.failed,
        "CANCELLED": ExperimentState.cancelled,
        "CRASHED": ExperimentState.crashed,
    }.get(t, ExperimentState.failed)


class Experiment(BaseModel):
    """One experiment in a lab's queue, read from its Prefect flow run."""

    id: str = Field(description="the experiment id: its Prefect flow run id")
    name: str = Field("", description="the flow run's name, as Prefect's UI shows it")
    lab: str
    plan: str
    params: dict[str, Any] = Field(default_factory=dict)
    submitter: str = ""
    role: str = ""
    priority: Priority = Priority.normal
    state: ExperimentState
    state_name: str = Field("", description="the Prefect state's name")
    message: str = Field("", description="the Prefect state's message")
    created: datetime | None = None
    scheduled: datetime | None = Field(None, description="order key within a priority")
    started: datetime | None = None
    ended: datetime | None = None
    run_uids: list[str] = Field(default_factory=list)
    exit_status: str | None = None
    error: str | None = None
    worker: str | None = None
    edits: list[dict[str, Any]] = Field(
        default_factory=list,
        description="edits of the parameters before it started: by, role, at, previous params",
    )
    devices: list[str] = Field(
        default_factory=list,
        description="the devices its plan drives (computed by the lab's registry on submission)",
    )
    audit_head: str = Field(
        "",
        description="the gateway's audit-log head hash when it accepted the submission "
        "(empty: not submitted through a gateway)",
    )
    waiting_for: str | None = Field(
        None,
        description="why it waits, as the lab's worker says (e.g. 'waiting for heater, held by "
        "<experiment> since 10:42:05'); filled in by listings",
    )
    #: read from a flow run held by an edit (Pending ``[editing] …``; it reads as queued)
    _held_for_edit: bool = PrivateAttr(default=False)

    @property
    def held_for_edit(self) -> bool:
        """Whether an edit holds it this moment (read from its flow run; False otherwise)."""
        return self._held_for_edit

    @classmethod
    def from_flow_run(cls, run: Any) -> Experiment:
        """Build from a Prefect ``FlowRun`` (client schema)."""
        params = run.parameters or {}
        tags = list(run.tags or [])
        lab = next((t.split(":", 1)[1] for t in tags if t.startswith("lab:")), "")
        prio = next((t.split(":", 1)[1] for t in tags if t.startswith("priority:")), "normal")
        state = run.state
        stype = state.type.value if state is not None else "SCHEDULED"
        sname = state.name if state is not None else ""
        message = (state.message or "") if state is not None else ""
        estate = state_of(stype, sname)
        editing = held_for_edit(state)
        scheduled = run.next_scheduled_start_time or run.expected_start_time
        if editing:  # held for a moment by an edit: still waiting to run, in its place
            estate = ExperimentState.queued
            scheduled = state.state_details.scheduled_time or scheduled
        recorded = read_record(dict(run.labels or {}), message)
        exp = cls(
            id=str(run.id),
            name=run.name or "",
            lab=lab,
            plan=str(params.get("plan", "")),
            params=dict(params.get("params") or {}),
            submitter=str(params.get("submitter", "")),
            role=str(params.get("role", "")),
            priority=Priority(prio) if prio in Priority.__members__ else Priority.normal,
            state=estate,
            state_name=sname or "",
            message=message,
            created=run.created,
            scheduled=scheduled,
            started=run.start_time,
            ended=run.end_time,
            run_uids=recorded.run_uids,
            exit_status=recorded.exit_status,
            error=message if estate in (ExperimentState.failed, ExperimentState.crashed) else None,
            worker=None if editing else recorded.worker,
            edits=list(params.get("edits") or []),
            devices=[str(d) for d in params.get("devices") or []],
            audit_head=str(params.get("audit_head") or ""),
        )
        exp._held_for_edit = editing
        return exp

    def order_key(self) -> tuple[int, datetime | None]:
        return (self.priority.rank, self.scheduled)


_QUEUE_RANK = {
    ExperimentState.running: 0,
    ExperimentState.paused: 0,
    ExperimentState.queued: 1,
    ExperimentState.waiting_for_approval: 2,
}
_FAR = datetime.max.replace(tzinfo=UTC)


def queue_order(exp: Experiment) -> tuple[int, int, datetime]:
    """The sort key of the queue's order: running first, then queued by priority and place,
    then awaiting approval, then the rest."""
    return (_QUEUE_RANK.get(exp.state, 3), exp.priority.rank, exp.scheduled or _FAR)


class Question(BaseModel):
    """A question a running plan asks the operator (``ask_operator``)."""

    id: str
    experiment_id: str
    prompt: str
    kind: str = Field("confirm", description="'confirm' (answer: true/false) or 'value'")


__all__ = [
    "AWAITING_APPROVAL",
    "AWAITING_OPERATOR",
    "EDITING",
    "FINISHED",
    "FLOW_NAME",
    "PAUSED_NAME",
    "STATE_TYPES",
    "Experiment",
    "ExperimentState",
    "Priority",
    "Question",
    "devices_of",
    "held_for_edit",
    "lab_tag",
    "pool_name",
    "prefect_types",
    "priority_tag",
    "queue_order",
    "state_of",
]


def devices_of(validated: Any) -> list[str]:
    """The devices a validated submission drives (``ValidatedPlan.devices``), sorted; none for
    a registry whose validation says nothing of devices."""
    return sorted({str(d) for d in getattr(validated, "devices", None) or ()})


#: the states of an experiment that has not started
WAITING = (ExperimentState.waiting_for_approval, ExperimentState.queued)


def needs_approval(lab: Any, plan: str, role: str) -> bool:
    """Whether a lab requires a manager's approval for ``plan`` submitted by ``role``.

    The lab file says so under ``plans.approval``: ``roles: [...]`` (every submission by these
    roles) and/or ``plans: [...]`` (these plans, whoever submits). A manager's or an admin's
    own submissions need none.
    """
    spec = getattr(lab, "spec", lab)
    rules = getattr(getattr(spec, "plans", None), "approval", None) or {}
    if role in ("manager", "admin"):
        return False
    return role in rules.get("roles", []) or plan in rules.get("plans", [])
