"""An in-memory stand-in for :class:`~remotelab.queue.prefect_lab.PrefectLab`.

:class:`FakePrefectLab` keeps a lab's flow runs, their state histories, the lab's hold and
the workers' announcements in memory, and orchestrates state changes by the rules of Prefect's
that remotelab relies on, so the queue's and the worker's logic can be tested without a
Prefect server (as ophyd-async tests devices on a mock backend). The tests on a real server
stay the reference: what this fake allows, Prefect must too.

Rules modelled (``force`` skips them all):

- Pending is refused over Pending, Running, Paused, Cancelling and Cancelled (one claim wins),
  and accepted over a finished Completed, Failed or Crashed run (Prefect's re-run);
- Running is refused over Cancelling and over a finished run;
- Paused is refused over Pending; Cancelled, Completed, Failed and Crashed over a finished run;
- Scheduled is accepted over anything not finished (Prefect has no compare-and-set).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from prefect.client.schemas.actions import LogCreate
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
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
)
from remotelab.queue.device_slots import MemoryDeviceSlots
from remotelab.queue.prefect_lab import StateResult

_FINISHED = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
_REFUSED_FROM: dict[StateType, set[StateType]] = {
    StateType.PENDING: {
        StateType.PENDING,
        StateType.RUNNING,
        StateType.PAUSED,
        StateType.CANCELLING,
        StateType.CANCELLED,
    },
    StateType.RUNNING: {StateType.CANCELLING, *_FINISHED},
    StateType.PAUSED: {StateType.PENDING, *_FINISHED},
    StateType.SCHEDULED: set(_FINISHED),
    StateType.CANCELLING: set(_FINISHED),
    StateType.CANCELLED: set(_FINISHED),
    StateType.COMPLETED: set(_FINISHED),
    StateType.FAILED: set(_FINISHED),
    StateType.CRASHED: {StateType.CANCELLING, *_FINISHED},
}


def refusal(current: State | None, proposed: State) -> str:
    """Why the fake's orchestration refuses ``proposed`` over ``current`` ('' if it does not)."""
    if current is not None and current.type in _REFUSED_FROM.get(proposed.type, set()):
        return f"{proposed.type.value} is not allowed over {current.type.value}"
    return ""


class FakePrefectLab:
    """A lab's runs, hold and workers in memory, behind :class:`PrefectLab`'s interface.

    ``records`` collects what workers record (summary, description, logs) per run.
    """

    api_url = "memory://"

    def __init__(self, name: str):
        self.name = name
        self.deployment_id = uuid4()
        self.held = False
        self.runs_by_id: dict[UUID, FlowRun] = {}
        self.states: dict[UUID, list[State]] = {}
        self.variables: dict[str, dict[str, Any]] = {}
        #: the notification subscriptions' variables (apart: they are no announcements)
        self.subscribed: dict[str, dict[str, Any]] = {}
        self.records: dict[str, list[tuple[str, str, list[LogCreate]]]] = {}
        self.heartbeats: list[str] = []
        self.slots = MemoryDeviceSlots()
        self._lock = threading.RLock()
        self._clock = datetime.now(UTC)

    def _now(self) -> datetime:
        # strictly increasing, as Prefect's server-minted state timestamps are in order
        self._clock = max(self._clock + timedelta(microseconds=1), datetime.now(UTC))
        return self._clock

    def ensure(self) -> UUID:
        return self.deployment_id

    def close(self) -> None:
        return None

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
        with self._lock:
            for known in self.runs_by_id.values():  # Prefect: unique per flow
                if idempotency_key is not None and known.idempotency_key == idempotency_key:
                    return self.read_run(known.id)
            run_id = uuid4()
            now = self._now()
            run = FlowRun.model_validate(
                {
                    "id": run_id,
                    "name": f"run-{run_id.hex[:6]}",
                    "flow_id": uuid4(),
                    "deployment_id": self.deployment_id,
                    "parameters": dict(parameters),
                    "tags": list(tags),
                    "work_queue_name": work_queue,
                    "idempotency_key": idempotency_key,
                    "created": now,
                    "expected_start_time": state.state_details.scheduled_time or now,
                }
            )
            self.runs_by_id[run_id] = run
            self.states[run_id] = []
            self._record_state(run_id, state)
            return self.read_run(run_id)

    def _record_state(self, run_id: UUID, state: State) -> State:
        recorded = state.model_copy(update={"id": uuid4(), "timestamp": self._now()}, deep=True)
        details = recorded.state_details
        if recorded.type == StateType.SCHEDULED and details.scheduled_time is None:
            details = details.model_copy(update={"scheduled_time": recorded.timestamp})
            recorded = recorded.model_copy(update={"state_details": details})
        self.states[run_id].append(recorded)
        run = self.runs_by_id[run_id]
        updates: dict[str, Any] = {"state": recorded, "state_id": recorded.id}
        if recorded.type == StateType.SCHEDULED:
            updates["next_scheduled_start_time"] = recorded.state_details.scheduled_time
            updates["expected_start_time"] = recorded.state_details.scheduled_time
        if recorded.type == StateType.RUNNING and run.start_time is None:
            updates["start_time"] = recorded.timestamp
        if recorded.type in _FINISHED:
            updates["end_time"] = recorded.timestamp
        self.runs_by_id[run_id] = run.model_copy(update=updates)
        return recorded

    def read_run(self, run_id: str | UUID) -> FlowRun:
        try:
            key = UUID(str(run_id))
            return self.runs_by_id[key].model_copy(deep=True)
        except (KeyError, ValueError):
            raise ExperimentNotFound(f"no experiment {run_id} in lab {self.name}") from None

    def runs(
        self,
        types: Iterable[StateType] | None = None,
        *,
        tags: Sequence[str] | None = None,
        sort: FlowRunSort = FlowRunSort.EXPECTED_START_TIME_ASC,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[FlowRun]:
        wanted = set(types) if types is not None else None
        with self._lock:
            found = [
                r.model_copy(deep=True)
                for r in self.runs_by_id.values()
                if (wanted is None or (r.state is not None and r.state.type in wanted))
                and set(tags or ()) <= set(r.tags)
            ]
        far = datetime.max.replace(tzinfo=UTC)
        if sort == FlowRunSort.END_TIME_DESC:
            found.sort(key=lambda r: r.end_time or far, reverse=True)
        elif sort == FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC:
            found.sort(key=lambda r: r.next_scheduled_start_time or far)
        else:
            found.sort(key=lambda r: r.expected_start_time or far)
        end = None if limit is None else offset + limit
        return found[offset:end]

    def count(self, types: Iterable[StateType], *, tags: Sequence[str] | None = None) -> int:
        return len(self.runs(types, tags=tags))

    def history(self, run_id: UUID) -> list[State]:
        with self._lock:
            return [s.model_copy(deep=True) for s in self.states.get(UUID(str(run_id)), [])]

    def set_state(self, run_id: str | UUID, state: State, *, force: bool = False) -> StateResult:
        key = UUID(str(run_id))
        with self._lock:
            if key not in self.runs_by_id:
                raise ExperimentNotFound(f"no experiment {run_id} in lab {self.name}")
            why = "" if force else refusal(self.runs_by_id[key].state, state)
            if why:
                return StateResult(False, None, why)
            return StateResult(True, self._record_state(key, state).model_copy(deep=True))

    def update_run(
        self,
        run_id: str | UUID,
        *,
        parameters: dict[str, Any] | None = None,
        tags: Sequence[str] | None = None,
    ) -> None:
        key = UUID(str(run_id))
        with self._lock:
            updates: dict[str, Any] = {}
            if parameters is not None:
                updates["parameters"] = dict(parameters)
            if tags is not None:
                updates["tags"] = list(tags)
            self.runs_by_id[key] = self.runs_by_id[key].model_copy(update=updates)

    def update_labels(self, run_id: str | UUID, labels: dict[str, str]) -> None:
        key = UUID(str(run_id))
        with self._lock:
            run = self.runs_by_id[key]
            merged = {**(run.labels or {}), **labels}
            self.runs_by_id[key] = run.model_copy(update={"labels": merged})

    def record(
        self, run_id: str | UUID, summary: str, description: str, logs: Sequence[LogCreate]
    ) -> None:
        with self._lock:
            self.records.setdefault(str(run_id), []).append((summary, description, list(logs)))

    # -- the lab -----------------------------------------------------------------------------
    def is_held(self) -> bool:
        return self.held

    def set_held(self, held: bool) -> None:
        self.held = held

    # -- workers -----------------------------------------------------------------------------
    def announce(self, announcement: WorkerAnnouncement, *, create: bool = False) -> None:
        with self._lock:
            if not create and announcement.variable not in self.variables:
                raise AnnouncementMissing(f"no variable {announcement.variable}")
            self.variables[announcement.variable] = announcement.to_value()

    def _announcements(self) -> dict[str, dict[str, Any]]:
        prefix = lab_prefix(self.name)
        return {k: v for k, v in self.variables.items() if k.startswith(prefix)}

    def withdraw(self, worker_id: str) -> None:
        with self._lock:
            for name, value in self._announcements().items():
                if value.get("id") == worker_id and value.get("lab") == self.name:
                    del self.variables[name]

    def announcement(self, worker_id: str) -> WorkerAnnouncement | None:
        with self._lock:
            for value in self._announcements().values():
                if value.get("id") == worker_id and value.get("lab") == self.name:
                    return WorkerAnnouncement.parse(value)
        return None

    def workers(self, *, live: bool = True) -> list[WorkerAnnouncement]:
        with self._lock:
            found = [WorkerAnnouncement.parse(v) for v in self._announcements().values()]
        return [
            w for w in found if w is not None and w.lab == self.name and (not live or w.is_alive())
        ]

    def pool_heartbeat(self, worker_name: str, interval: float) -> None:
        self.heartbeats.append(worker_name)

    def device_slots(self) -> MemoryDeviceSlots:
        return self.slots

    # -- lost workers ------------------------------------------------------------------------
    def mark_lost(self, record: LostRecord) -> bool:
        with self._lock:
            if record.variable in self.variables:
                return False
            self.variables[record.variable] = record.to_value()
            return True

    def update_lost(self, record: LostRecord) -> None:
        with self._lock:
            self.variables[record.variable] = record.to_value()

    def lost(self, worker_id: str) -> LostRecord | None:
        with self._lock:
            value = self.variables.get(lost_variable(self.name, worker_id))
        return LostRecord.parse(value) if value is not None else None

    def lost_workers(self) -> list[LostRecord]:
        prefix = lost_prefix(self.name)
        with self._lock:
            values = [v for k, v in self.variables.items() if k.startswith(prefix)]
        return [r for r in map(LostRecord.parse, values) if r is not None]

    def forget_lost(self, worker_id: str) -> None:
        with self._lock:
            self.variables.pop(lost_variable(self.name, worker_id), None)

    # -- notification subscriptions ----------------------------------------------------------
    def subscriptions(self) -> list[Subscription]:
        with self._lock:
            found = [subscriptions.parse(v) for v in self.subscribed.values()]
        return sorted((s for s in found if s is not None), key=lambda s: s.created)

    def subscribe(self, subscription: Subscription) -> None:
        with self._lock:
            name = subscriptions.variable_name(self.name, subscription.id)
            self.subscribed[name] = subscription.model_dump(mode="json")

    def unsubscribe(self, subscription_id: str) -> None:
        with self._lock:
            self.subscribed.pop(subscriptions.variable_name(self.name, subscription_id), None)


__all__ = ["FakePrefectLab", "refusal"]
