"""One lab on Prefect: every read and state change remotelab makes there, in one class.

:class:`PrefectLab` is the only place that builds Prefect filters, pages Prefect's answers
and talks to its client for a lab: the runs of the lab's deployment, their counts and state
histories, state changes (and, with :mod:`remotelab.queue.transitions`, compare-and-set
ones), labels, records, whether the lab is held (its work pool paused), and the workers'
announcements. The queue service, the listing and the worker all go through it;
:class:`remotelab.queue.fake.FakePrefectLab` stands in for it where no server is wanted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import (
    ArtifactCreate,
    LogCreate,
    VariableCreate,
    VariableUpdate,
    WorkPoolUpdate,
)
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError
from prefect.states import State

from remotelab.errors import ExperimentNotFound
from remotelab.notify import Subscription
from remotelab.queue import subscriptions
from remotelab.queue.announcement import (
    AnnouncementMissing,
    LostRecord,
    WorkerAnnouncement,
    lab_prefix,
    lost_prefix,
    lost_variable,
    variable_name,
)
from remotelab.queue.device_slots import DeviceSlots, PrefectDeviceSlots
from remotelab.queue.models import pool_name
from remotelab.queue.prefect_api import ClientPerThread, ensure_lab

#: flow runs read per request (Prefect's default page)
PAGE = 200
#: the key of the summary artifact a worker writes for every finished experiment
SUMMARY_KEY = "remotelab-experiment-summary"


@dataclass(frozen=True)
class StateResult:
    """Prefect's answer to a state change: accepted or not (and why), the state recorded."""

    accepted: bool
    state: State | None = None
    reason: str = ""


class LabOnPrefect(Protocol):
    """What the queue and the worker need of a lab on Prefect (see :class:`PrefectLab`)."""

    name: str

    @property
    def deployment_id(self) -> UUID: ...

    def ensure(self) -> UUID: ...

    def close(self) -> None: ...

    def create_run(
        self,
        parameters: dict[str, Any],
        state: State,
        *,
        tags: Sequence[str],
        work_queue: str,
        idempotency_key: str | None = None,
    ) -> FlowRun: ...

    def read_run(self, run_id: str | UUID) -> FlowRun: ...

    def runs(
        self,
        types: Iterable[StateType] | None = None,
        *,
        tags: Sequence[str] | None = None,
        sort: FlowRunSort = FlowRunSort.EXPECTED_START_TIME_ASC,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[FlowRun]: ...

    def count(self, types: Iterable[StateType], *, tags: Sequence[str] | None = None) -> int: ...

    def history(self, run_id: UUID) -> list[State]: ...

    def set_state(
        self, run_id: str | UUID, state: State, *, force: bool = False
    ) -> StateResult: ...

    def update_run(
        self,
        run_id: str | UUID,
        *,
        parameters: dict[str, Any] | None = None,
        tags: Sequence[str] | None = None,
    ) -> None: ...

    def update_labels(self, run_id: str | UUID, labels: dict[str, str]) -> None: ...

    def record(
        self, run_id: str | UUID, summary: str, description: str, logs: Sequence[LogCreate]
    ) -> None: ...

    def is_held(self) -> bool: ...

    def set_held(self, held: bool) -> None: ...

    def announce(self, announcement: WorkerAnnouncement, *, create: bool = False) -> None: ...

    def withdraw(self, worker_id: str) -> None: ...

    def announcement(self, worker_id: str) -> WorkerAnnouncement | None: ...

    def workers(self, *, live: bool = True) -> list[WorkerAnnouncement]: ...

    def pool_heartbeat(self, worker_name: str, interval: float) -> None: ...

    def device_slots(self) -> DeviceSlots: ...

    def mark_lost(self, record: LostRecord) -> bool: ...

    def update_lost(self, record: LostRecord) -> None: ...

    def lost(self, worker_id: str) -> LostRecord | None: ...

    def lost_workers(self) -> list[LostRecord]: ...

    def forget_lost(self, worker_id: str) -> None: ...

    def subscriptions(self) -> list[Subscription]: ...

    def subscribe(self, subscription: Subscription) -> None: ...

    def unsubscribe(self, subscription_id: str) -> None: ...


def state_filter(types: Iterable[StateType] | None, tags: Sequence[str] | None) -> FlowRunFilter:
    """The flow run filter of runs in Prefect state ``types`` with every tag in ``tags``."""
    flt = FlowRunFilter()
    if types is not None:
        flt.state = FlowRunFilterState(
            type=FlowRunFilterStateType(any_=sorted(set(types), key=lambda t: t.value))
        )
    if tags:
        flt.tags = FlowRunFilterTags(all_=list(tags))
    return flt


class PrefectLab:
    """The Prefect side of lab ``name``: its deployment's runs, its work pool, its workers.

    One Prefect client per thread (``api_url``: default from the settings). The lab's pool,
    queues and deployment are created on first use (:meth:`ensure`).
    """

    def __init__(self, name: str, api_url: str | None = None):
        self.name = name
        self._clients = ClientPerThread(api_url)
        self.api_url = self._clients.api_url
        self._deployment_id: UUID | None = None
        self._slots = PrefectDeviceSlots(name, self._clients.get)

    @property
    def client(self) -> SyncPrefectClient:
        """This thread's Prefect client."""
        return self._clients.get()

    @property
    def deployment_id(self) -> UUID:
        if self._deployment_id is None:
            self._deployment_id = self.ensure()
        return self._deployment_id

    def ensure(self) -> UUID:
        """Create the lab's work pool, queues and deployment if missing (idempotent)."""
        self._deployment_id = ensure_lab(self.client, self.name)
        return self._deployment_id

    def close(self) -> None:
        self._clients.close()

    # -- runs --------------------------------------------------------------------------------
    def create_run(
        self,
        parameters: dict[str, Any],
        state: State,
        *,
        tags: Sequence[str],
        work_queue: str,
        idempotency_key: str | None = None,
    ) -> FlowRun:
        """A new run of the lab's deployment, in ``state`` (``idempotency_key``: Prefect's,
        unique per flow: a second create with it answers the first run)."""
        return self.client.create_flow_run_from_deployment(
            self.deployment_id,
            parameters=parameters,
            state=state,
            tags=list(tags),
            work_queue_name=work_queue,
            idempotency_key=idempotency_key,
        )

    def read_run(self, run_id: str | UUID) -> FlowRun:
        """One run of the lab's deployment; :class:`ExperimentNotFound` if it is not one."""
        try:
            run = self.client.read_flow_run(UUID(str(run_id)))
        except (ObjectNotFound, ValueError):
            raise ExperimentNotFound(f"no experiment {run_id} in lab {self.name}") from None
        if run.deployment_id != self.deployment_id:
            raise ExperimentNotFound(f"no experiment {run_id} in lab {self.name}")
        return run

    def _deployment(self) -> DeploymentFilter:
        return DeploymentFilter(id=DeploymentFilterId(any_=[self.deployment_id]))

    def runs(
        self,
        types: Iterable[StateType] | None = None,
        *,
        tags: Sequence[str] | None = None,
        sort: FlowRunSort = FlowRunSort.EXPECTED_START_TIME_ASC,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[FlowRun]:
        """The lab's runs in Prefect state ``types`` (all if None) with every tag in ``tags``,
        in ``sort`` order, paged by ``offset`` and ``limit`` (Prefect's pages read in turn)."""
        flt = state_filter(types, tags)
        runs: list[FlowRun] = []
        while True:
            want = PAGE if limit is None else min(PAGE, limit - len(runs))
            page = self.client.read_flow_runs(
                flow_run_filter=flt,
                deployment_filter=self._deployment(),
                sort=sort,
                limit=want,
                offset=offset + len(runs),
            )
            runs.extend(page)
            if len(page) < want or (limit is not None and len(runs) >= limit):
                return runs

    def count(self, types: Iterable[StateType], *, tags: Sequence[str] | None = None) -> int:
        """How many of the lab's runs are in Prefect state ``types`` with ``tags``."""
        return self.client.count_flow_runs(
            flow_run_filter=state_filter(types, tags), deployment_filter=self._deployment()
        )

    def history(self, run_id: UUID) -> list[State]:
        """A run's states, oldest first (Prefect mints their timestamps on the server)."""
        return sorted(self.client.read_flow_run_states(run_id), key=lambda st: st.timestamp)

    def set_state(self, run_id: str | UUID, state: State, *, force: bool = False) -> StateResult:
        """Propose ``state`` to Prefect's orchestration (``force``: impose it)."""
        result = self.client.set_flow_run_state(UUID(str(run_id)), state, force=force)
        accepted = result.status.value == "ACCEPT" and result.state is not None
        reason = "" if accepted else getattr(result.details, "reason", "") or result.status.value
        return StateResult(accepted, result.state, reason or "")

    def update_run(
        self,
        run_id: str | UUID,
        *,
        parameters: dict[str, Any] | None = None,
        tags: Sequence[str] | None = None,
    ) -> None:
        """Replace a run's parameters and/or tags."""
        self.client.update_flow_run(
            UUID(str(run_id)),
            parameters=parameters,
            tags=list(tags) if tags is not None else None,
        )

    def update_labels(self, run_id: str | UUID, labels: dict[str, str]) -> None:
        """Add (or change) labels on a run."""
        values: dict[str, bool | int | float | str] = dict(labels)
        self.client.update_flow_run_labels(UUID(str(run_id)), values)

    def record(
        self, run_id: str | UUID, summary: str, description: str, logs: Sequence[LogCreate]
    ) -> None:
        """Attach a finished experiment's summary (a markdown artifact) and ``logs``."""
        self.client.request(  # not create_artifact(): it would also emit a client-side event
            "POST",
            "/artifacts/",
            json=ArtifactCreate(
                key=SUMMARY_KEY,
                type="markdown",
                data=summary,
                description=description,
                flow_run_id=UUID(str(run_id)),
            ).model_dump(mode="json", exclude_unset=True),
        )
        if logs:
            self.client.create_logs(list(logs))

    # -- the lab -----------------------------------------------------------------------------
    def is_held(self) -> bool:
        """Whether the lab is held (its work pool paused)."""
        return bool(self.client.read_work_pool(pool_name(self.name)).is_paused)

    def set_held(self, held: bool) -> None:
        """Hold or release the lab (pause or resume its work pool, as Prefect's UI shows)."""
        self.deployment_id  # noqa: B018 (make sure the pool exists)
        self.client.update_work_pool(pool_name(self.name), WorkPoolUpdate(is_paused=held))

    # -- workers -----------------------------------------------------------------------------
    def announce(self, announcement: WorkerAnnouncement, *, create: bool = False) -> None:
        """Write a worker's announcement (``create``: afresh, replacing an old one)."""
        name = announcement.variable
        if create:
            with contextlib.suppress(ObjectNotFound):
                self.client.delete_variable_by_name(name)
            self.client.create_variable(
                VariableCreate(name=name, value=announcement.to_value(), tags=["remotelab"])
            )
        else:
            try:
                self.client.update_variable(
                    VariableUpdate(name=name, value=announcement.to_value())
                )
            except (ObjectNotFound, PrefectHTTPStatusError) as exc:
                status = getattr(getattr(exc, "response", None), "status_code", 404)
                if status != 404:
                    raise
                raise AnnouncementMissing(f"no announcement {name} in Prefect") from None

    def withdraw(self, worker_id: str) -> None:
        """Remove a worker's announcement (it is gone)."""
        with contextlib.suppress(ObjectNotFound):
            self.client.delete_variable_by_name(variable_name(self.name, worker_id))

    def announcement(self, worker_id: str) -> WorkerAnnouncement | None:
        """A worker's announcement, if there is one."""
        var = self.client.read_variable_by_name(variable_name(self.name, worker_id))
        return WorkerAnnouncement.parse(var.value) if var is not None else None

    def workers(self, *, live: bool = True) -> list[WorkerAnnouncement]:
        """The announcements of the lab's workers (``live``: only of those still running)."""
        found = []
        for value in self._variables(lab_prefix(self.name)):
            info = WorkerAnnouncement.parse(value)
            if info is not None and (not live or info.is_alive()):
                found.append(info)
        return found

    # -- lost workers ------------------------------------------------------------------------
    def mark_lost(self, record: LostRecord) -> bool:
        """Record a worker as lost, unless another marker did first (then False): the variable
        is created, and Prefect refuses a second one of the same name."""
        try:
            self.client.create_variable(
                VariableCreate(name=record.variable, value=record.to_value(), tags=["remotelab"])
            )
        except ObjectAlreadyExists:
            return False
        return True

    def update_lost(self, record: LostRecord) -> None:
        """Rewrite a lost worker's record (what its marker did)."""
        self.client.update_variable(VariableUpdate(name=record.variable, value=record.to_value()))

    def lost(self, worker_id: str) -> LostRecord | None:
        """The record of worker ``worker_id`` as lost, if it is recorded so."""
        var = self.client.read_variable_by_name(lost_variable(self.name, worker_id))
        return LostRecord.parse(var.value) if var is not None else None

    def lost_workers(self) -> list[LostRecord]:
        """The records of the lab's lost workers."""
        found = (LostRecord.parse(v) for v in self._variables(lost_prefix(self.name)))
        return [r for r in found if r is not None and r.lab == self.name]

    def _variables(self, prefix: str) -> list[Any]:
        """The values of the variables whose name starts with ``prefix`` (Prefect selects
        by substring, page by page; the prefix is checked here)."""
        values: list[Any] = []
        offset = 0
        while True:
            page = self.client.request(
                "POST",
                "/variables/filter",
                json={"variables": {"name": {"like_": prefix}}, "limit": PAGE, "offset": offset},
            ).json()
            offset += len(page)
            values += [v.get("value") for v in page if str(v.get("name", "")).startswith(prefix)]
            if len(page) < PAGE:
                return values

    def forget_lost(self, worker_id: str) -> None:
        """Remove a worker's lost record (it came back, or the record is old)."""
        with contextlib.suppress(ObjectNotFound):
            self.client.delete_variable_by_name(lost_variable(self.name, worker_id))

    def pool_heartbeat(self, worker_name: str, interval: float) -> None:
        """Tell Prefect a worker serves the lab's pool (Prefect's UI lists it)."""
        self.client.send_worker_heartbeat(pool_name(self.name), worker_name, interval)

    def device_slots(self) -> DeviceSlots:
        """The lab's devices as Prefect global concurrency limits (see
        :mod:`remotelab.queue.device_slots`)."""
        return self._slots

    # -- notification subscriptions ----------------------------------------------------------
    def subscriptions(self) -> list[Subscription]:
        """The users' notification subscriptions of the lab (see
        :mod:`remotelab.queue.subscriptions`)."""
        prefix = subscriptions.lab_prefix(self.name)
        found: list[Subscription] = []
        offset = 0
        while True:
            page = self.client.request(
                "POST",
                "/variables/filter",
                json={"variables": {"name": {"like_": prefix}}, "limit": PAGE, "offset": offset},
            ).json()
            for var in page:
                sub = subscriptions.parse(var.get("value"))
                if str(var.get("name", "")).startswith(prefix) and sub is not None:
                    found.append(sub)
            if len(page) < PAGE:
                return sorted(found, key=lambda s: s.created)
            offset += PAGE

    def subscribe(self, subscription: Subscription) -> None:
        """Store a notification subscription (a Prefect variable of its own)."""
        self.client.create_variable(
            VariableCreate(
                name=subscriptions.variable_name(self.name, subscription.id),
                value=subscription.model_dump(mode="json"),
                tags=["remotelab", "remotelab-notify"],
            )
        )

    def unsubscribe(self, subscription_id: str) -> None:
        """Remove a notification subscription (none: nothing to do)."""
        with contextlib.suppress(ObjectNotFound):
            self.client.delete_variable_by_name(
                subscriptions.variable_name(self.name, subscription_id)
            )


def log_entry(run_id: str | UUID, level: int, message: str, at: datetime) -> LogCreate:
    """A log line of an experiment's run, from the worker."""
    return LogCreate(
        name="remotelab.worker",
        level=level,
        message=message,
        timestamp=at,
        flow_run_id=UUID(str(run_id)),
    )


__all__ = [
    "PAGE",
    "SUMMARY_KEY",
    "LabOnPrefect",
    "PrefectLab",
    "StateResult",
    "log_entry",
    "state_filter",
]
