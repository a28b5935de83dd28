"""The bodies the gateway takes and gives (pydantic models; they make its OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from remotelab.api.auth import Role
from remotelab.queue.announcement import LostRecord
from remotelab.queue.models import Experiment, ExperimentState, Priority


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubmitRequest(_Body):
    """An experiment to queue: a plan of the lab and its parameters."""

    plan: str = Field(min_length=1, description="a plan the lab offers (GET .../plans)")
    params: dict[str, Any] = Field(default_factory=dict, description="the plan's parameters")
    priority: Priority = Priority.normal


class EditRequest(_Body):
    """New parameters for an experiment that has not started, merged into its parameters."""

    params: dict[str, Any] = Field(
        description="parameters to change: a key given replaces that parameter, a key given as "
        "null removes it (the plan's default applies), keys not given stay"
    )


class CancelRequest(_Body):
    reason: str = Field("", max_length=500)


class MoveRequest(_Body):
    """Where to move a queued experiment: ``to`` front or back, or ``behind`` another one."""

    to: Literal["front", "back"] | None = None
    behind: str | None = Field(None, description="id of the experiment to queue it behind")

    @model_validator(mode="after")
    def _one_place(self) -> MoveRequest:
        if (self.to is None) == (self.behind is None):
            raise ValueError("give exactly one of 'to' (front or back) and 'behind'")
        return self


class PriorityRequest(_Body):
    priority: Priority


class AnswerRequest(_Body):
    value: bool | float | str = Field(True, description="the operator's answer")


class PauseRequest(_Body):
    immediate: bool = Field(False, description="pause now (rewinding) instead of at a checkpoint")


class AbortRequest(_Body):
    reason: str = Field("", max_length=500)


class ExperimentPage(BaseModel):
    """One page of a listing, with the number of matches in all."""

    items: list[Experiment]
    total: int
    limit: int
    offset: int


class Control(BaseModel):
    """The answer of a lab control (hold, pause, abort …)."""

    lab: str
    action: str
    experiment: str | None = Field(None, description="the experiment it was for, if named")
    held: bool | None = None
    worker: dict[str, Any] = Field(default_factory=dict, description="the worker's answer")


class Waiter(BaseModel):
    """An experiment waiting for a resource, since when."""

    experiment: str
    since: datetime | None = None


class Reservation(BaseModel):
    """Who holds a resource (a device, or ``sample:<id>``) and who waits for it."""

    holder: str | None = Field(None, description="the experiment holding it")
    since: datetime | None = None
    block: bool = Field(False, description="held for a block of a plan's steps (shared device)")
    waiters: list[Waiter] = Field(default_factory=list, description="first in line first")


class RunningExperiment(BaseModel):
    """An experiment a worker runs now, as the worker tells."""

    model_config = ConfigDict(extra="allow")

    id: str
    plan: str | None = None
    submitter: str | None = None
    devices: list[str] = Field(default_factory=list)
    shared: list[str] = Field(default_factory=list, description="shared devices held in blocks")
    re_state: str | None = Field(None, description="its RunEngine's state")
    question: dict[str, Any] | None = None
    started: datetime | None = None
    worker: str | None = Field(None, description="the worker running it")


class LabReservations(BaseModel):
    """The lab's reservations, what runs and why waiting experiments wait (from its live
    workers; empty when none runs)."""

    reservations: dict[str, Reservation] = Field(
        default_factory=dict, description="resource -> holder and waiters"
    )
    waiting: dict[str, str] = Field(
        default_factory=dict, description="experiment id -> why it waits"
    )
    running: list[RunningExperiment] = Field(default_factory=list)
    concurrency: int = Field(0, description="how many experiments the live workers may run")
    workers: list[str] = Field(default_factory=list, description="the workers that answered")


class LabSummary(BaseModel):
    name: str
    description: str = ""
    simulated: bool
    visibility: Literal["lab", "own"] = Field(
        "lab",
        description="who sees its experiments: everyone with a role on it (lab), or only "
        "their submitters and its managers (own; the other lists and views hold the "
        "caller's own experiments only)",
    )
    held: bool
    workers: int = Field(description="live workers of the lab")
    queued: int = Field(description="experiments waiting (queued or awaiting approval)")
    current: Experiment | None = Field(None, description="the first running experiment")
    running: list[Experiment] = Field(
        default_factory=list, description="every running (or paused) experiment"
    )
    status: dict[str, Any] | None = Field(None, description="the worker's last live status")
    alerts: list[dict[str, Any]] = Field(
        default_factory=list,
        description="the open alerts of the lab's workers (outages, faults, stalls), each "
        "with its worker",
    )
    lost: list[LostRecord] = Field(
        default_factory=list,
        description="workers found lost (heartbeat stopped): who marked them, when, and the "
        "experiments marked crashed; kept until the worker comes back, or for a day",
    )


class Reading(BaseModel):
    """A device's latest values on the lab's live stream (arrays as their length)."""

    time: float = Field(description="the event's time (epoch seconds)")
    experiment: str | None = Field(None, description="the experiment whose run read it")
    values: dict[str, Any] = Field(description="data key -> value; an array as 'array[n]'")
    stored: bool = Field(
        False,
        description="from the last event of a stored run (the live stream has carried no "
        "reading of it since the gateway started)",
    )


class DeviceStatus(BaseModel):
    name: str
    class_: str = Field(alias="class")
    role: str
    backend: str
    limits: dict[str, list[float]]
    safe_state: dict[str, Any]
    shared: bool = Field(False, description="shared by stations, held for moments only")
    online: bool = Field(description="a live worker holds the device")
    busy: bool = Field(description="a running experiment holds (or uses) the device")
    experiment: str | None = Field(None, description="the experiment holding it, if any")
    waiters: list[Waiter] = Field(default_factory=list, description="experiments waiting for it")
    state: Literal["idle", "busy", "fault", "offline"] = Field(
        "offline",
        description="offline (no live worker), fault (an open alert names it), busy, idle",
    )
    fault: str | None = Field(None, description="the open alert that names it, if any")
    reading: Reading | None = Field(None, description="its latest reading on the live stream")

    model_config = ConfigDict(populate_by_name=True)


class SampleInfo(BaseModel):
    """A sample of the lab: where it is, who holds it, whether it is used up."""

    id: str
    location: str = Field(description="where it is: a rack slot, a station, gripper or lost")
    live: bool = Field(description="the location is a live worker's (else the lab file's)")
    lost: bool = Field(False, description="no longer anywhere the lab can reach")
    consumed: bool = Field(False, description="used up by a plan (e.g. titrated): refused by it")
    consumed_by: str | None = Field(None, description="the experiment that used it up")
    why_consumed: str | None = None
    held_by: str | None = Field(None, description="the running experiment holding it")
    description: str = ""
    volume_ml: float = 0.0
    metadata: dict[str, Any] = Field(default_factory=dict)


class PlanInfo(BaseModel):
    name: str
    description: str
    params_schema: dict[str, Any] = Field(alias="schema", description="JSON Schema of its params")
    example: dict[str, Any] = Field(default_factory=dict)
    allowed: bool = Field(description="whether the caller may submit it")
    needs_approval: bool = Field(description="whether the caller's submissions wait for approval")
    choices: dict[str, list[str]] = Field(
        default_factory=dict,
        description="parameter -> the names it may take in this lab (devices of its kind, "
        "samples, wells), for a form's choices",
    )

    model_config = ConfigDict(populate_by_name=True)


class RunInfo(BaseModel):
    """A stored run (bluesky run) and its metadata."""

    uid: str
    time: float
    stop_time: float | None = None
    experiment_id: str | None = None
    plan_name: str | None = None
    submitter: str | None = None
    lab: str | None = None
    scan_id: int | None = None
    exit_status: str | None = None
    reason: str | None = None
    num_events: int = 0
    content_hash: str | None = None
    sample_ids: list[str] = Field(default_factory=list)
    complete: bool
    streams: list[str] = Field(default_factory=list)
    start: dict[str, Any] | None = Field(None, description="the start document (one run only)")
    stop: dict[str, Any] | None = Field(None, description="the stop document (one run only)")


class StateChange(BaseModel):
    """One state an experiment went through, as its Prefect flow run recorded it."""

    state: ExperimentState
    name: str = Field(description="the Prefect state's name (AwaitingOperator, Paused …)")
    at: datetime
    message: str = ""


class ExperimentAction(BaseModel):
    """One request about an experiment, from the audit log (submitted, edited, approved,
    rejected, answered, moved …)."""

    time: float
    actor: str
    role: str
    action: str
    status: int
    detail: dict[str, Any] = Field(default_factory=dict)


class ExperimentHistory(BaseModel):
    """What happened to an experiment: its states, oldest first, and the requests about it
    (refused ones only for managers), oldest first."""

    states: list[StateChange]
    actions: list[ExperimentAction]


class RunVerification(BaseModel):
    """A stored run checked end to end: its documents and its record against the hashes
    recorded when it ended, and no document of it outside its range."""

    uid: str
    ok: bool = Field(description="every check held")
    expected: str | None = Field(None, description="the sha256 recorded at the run's end")
    actual: str = Field(description="the sha256 computed now from the stored documents")
    detail: str
    problems: list[str] = Field(
        default_factory=list, description="each problem found (documents, record, strays)"
    )


class Whoami(BaseModel):
    user: str
    role: Role
    labs: list[str]
    token_id: str


class UserCreate(_Body):
    name: str = Field(min_length=1, max_length=64)
    role: Role
    labs: list[str] = Field(default_factory=list, description="labs they may use; empty: all")


class UserUpdate(_Body):
    role: Role | None = None
    disabled: bool | None = None


class TokenCreate(_Body):
    description: str = Field("", max_length=200)


class AuditHead(BaseModel):
    """The newest row of the audit log's hash chain."""

    head: str = Field(description="its hash (empty: no chained row yet)")


__all__ = [
    "AbortRequest",
    "AnswerRequest",
    "AuditHead",
    "CancelRequest",
    "Control",
    "DeviceStatus",
    "EditRequest",
    "ExperimentAction",
    "ExperimentHistory",
    "ExperimentPage",
    "LabReservations",
    "LabSummary",
    "MoveRequest",
    "PauseRequest",
    "PlanInfo",
    "PriorityRequest",
    "Reading",
    "Reservation",
    "RunInfo",
    "RunVerification",
    "RunningExperiment",
    "SampleInfo",
    "StateChange",
    "SubmitRequest",
    "TokenCreate",
    "UserCreate",
    "UserUpdate",
    "Waiter",
    "Whoami",
]
