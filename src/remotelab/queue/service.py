"""The experiment queue of one lab, on Prefect: submit, list, order, cancel, approve, hold.

Prefect's database is the single source of truth: every call here reads or changes flow runs
of the lab's deployment, so Prefect's UI and CLI show the same queue. Controls Prefect cannot
carry (pause, resume, stop, abort, answers, prompt wake-ups) go to the lab's worker over zmq.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID, uuid4

from prefect.client.schemas.actions import WorkPoolUpdate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled, Paused, Scheduled, State

from remotelab.errors import (
    ExperimentNotFound,
    ExperimentStateError,
    QueueError,
    WorkerUnavailable,
)
from remotelab.queue import control, transitions
from remotelab.queue.editing import Editing, being_edited
from remotelab.queue.models import (
    AWAITING_APPROVAL,
    EDITING,
    WAITING,
    Experiment,
    ExperimentState,
    Priority,
    Question,
    lab_tag,
    needs_approval,
    pool_name,
    priority_tag,
)
from remotelab.queue.prefect_api import ClientPerThread, ensure_lab
from remotelab.queue.transitions import StateChanged

#: the Prefect state types of each experiment state (for filters)
_STATE_TYPES = {
    ExperimentState.waiting_for_approval: [StateType.PAUSED],
    # a queued run held for a moment by an edit is Pending (``[editing] …``)
    ExperimentState.queued: [StateType.SCHEDULED, StateType.PENDING],
    ExperimentState.running: [StateType.PENDING, StateType.RUNNING, StateType.CANCELLING],
    ExperimentState.paused: [StateType.PAUSED],
    ExperimentState.completed: [StateType.COMPLETED],
    ExperimentState.failed: [StateType.FAILED],
    ExperimentState.cancelled: [StateType.CANCELLED],
    ExperimentState.crashed: [StateType.CRASHED],
}
#: flow runs read per request
PAGE = 200
ACTIVE = (ExperimentState.running, ExperimentState.paused)
UNFINISHED = (*ACTIVE, ExperimentState.queued, ExperimentState.waiting_for_approval)


class PlanRegistryLike(Protocol):
    """What the queue needs of the plan registry (``remotelab.plans.registry``)."""

    def validate(self, name: str, params: dict[str, Any], *, lab: Any, role: str = ...) -> Any: ...

    def build(self, validated: Any, lab: Any, *, md: dict[str, Any] | None = None) -> Any: ...


def default_registry(lab: Any) -> PlanRegistryLike:
    """The lab's plan registry (the plans the lab file enables)."""
    from remotelab.plans.registry import registry_for

    return registry_for(lab)


def lab_name_of(lab: Any) -> str:
    return lab if isinstance(lab, str) else lab.name


class ExperimentQueue(Editing):
    """The queue of one lab on a Prefect server.

    ``lab`` is a :class:`~remotelab.lab.Lab` (or its spec): its name picks the work pool and
    deployment; its plan registry validates submissions. ``registry`` overrides the registry.
    """

    def __init__(
        self,
        lab: Any,
        *,
        api_url: str | None = None,
        registry: PlanRegistryLike | None = None,
        notify: bool = True,
    ):
        self.lab = lab
        self.name = lab_name_of(lab)
        self._clients = ClientPerThread(api_url)
        self.api_url = self._clients.api_url
        self._registry = registry
        self.notify = notify
        self._deployment_id: UUID | None = None
        self._workers_cache: tuple[float, list[dict[str, Any]]] = (0.0, [])

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def client(self):
        return self._clients.get()

    @property
    def registry(self) -> PlanRegistryLike:
        if self._registry is None:
            self._registry = default_registry(self.lab)
        return self._registry

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

    def __enter__(self) -> ExperimentQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- submission --------------------------------------------------------------------------
    def submit(
        self,
        plan: str,
        params: dict[str, Any] | None = None,
        *,
        submitter: str,
        role: str = "researcher",
        priority: Priority | str = Priority.normal,
    ) -> Experiment:
        """Validate and queue an experiment; it waits for approval if the lab requires it."""
        params = dict(params or {})
        try:
            prio = Priority(priority)
        except ValueError:
            raise QueueError(
                f"unknown priority {priority!r}; use one of {', '.join(p.value for p in Priority)}"
            ) from None
        try:
            json.dumps(params)
        except TypeError as exc:
            raise QueueError(f"parameters must be JSON values: {exc}") from None
        self.registry.validate(plan, params, lab=self.lab, role=role)
        approval = needs_approval(self.lab, plan, role)
        if approval:
            state: State = Paused(
                name=AWAITING_APPROVAL,
                message=f"submitted by {submitter} ({role}); waits for a manager's approval",
            )
        else:
            state = Scheduled(message=f"submitted by {submitter} ({role})")
        run = self.client.create_flow_run_from_deployment(
            self.deployment_id,
            parameters={"plan": plan, "params": params, "submitter": submitter, "role": role},
            state=state,
            tags=[lab_tag(self.name), priority_tag(prio), f"plan:{plan}", f"submitter:{submitter}"],
            work_queue_name=prio.value,
        )
        if not approval:
            self.wake()
        return Experiment.from_flow_run(run)

    # -- reading ------------------------------------------------------------------------------
    def get(self, experiment_id: str | UUID) -> Experiment:
        """One experiment by id; :class:`ExperimentNotFound` if it is not in this lab's queue."""
        return self._read_run(experiment_id)[1]

    def _read_run(self, experiment_id: str | UUID) -> tuple[Any, Experiment]:
        """One read of an experiment's flow run: the run and the experiment it is."""
        try:
            run = self.client.read_flow_run(UUID(str(experiment_id)))
        except (ObjectNotFound, ValueError):
            raise ExperimentNotFound(f"no experiment {experiment_id} in lab {self.name}") from None
        if run.deployment_id != self.deployment_id:
            raise ExperimentNotFound(f"no experiment {experiment_id} in lab {self.name}")
        return run, Experiment.from_flow_run(run)

    def read(
        self,
        states: Iterable[ExperimentState] | None = None,
        *,
        tags: list[str] | None = None,
        limit: int | None = None,
        sort: FlowRunSort = FlowRunSort.EXPECTED_START_TIME_ASC,
        offset: int = 0,
    ) -> list[Experiment]:
        """Experiments in ``states`` (all if None) with every tag in ``tags``, in ``sort`` order,
        paged by ``offset`` and ``limit``: the one read of the queue every listing builds on."""
        flt = FlowRunFilter()
        if states is not None:
            types = sorted(
                {t for s in states for t in _STATE_TYPES[ExperimentState(s)]}, key=lambda t: t.value
            )
            flt.state = FlowRunFilterState(type=FlowRunFilterStateType(any_=types))
        if tags:
            flt.tags = FlowRunFilterTags(all_=tags)
        deployment = DeploymentFilter(id=DeploymentFilterId(any_=[self.deployment_id]))
        runs: list = []
        while True:  # Prefect pages its answers (200 runs by default)
            want = PAGE if limit is None else min(PAGE, limit - len(runs))
            page = self.client.read_flow_runs(
                flow_run_filter=flt,
                deployment_filter=deployment,
                sort=sort,
                limit=want,
                offset=offset + len(runs),
            )
            runs.extend(page)
            if len(page) < want or (limit is not None and len(runs) >= limit):
                break
        wanted = set(states) if states is not None else None
        out = [Experiment.from_flow_run(r) for r in runs]
        return [e for e in out if wanted is None or e.state in wanted]

    def list(
        self, states: Iterable[ExperimentState | str] | None = None, *, limit: int | None = None
    ) -> list[Experiment]:
        """Experiments in queue order: running/paused first, then queued by priority and
        position, then those awaiting approval. ``states`` defaults to the unfinished ones."""
        wanted = [ExperimentState(s) for s in (states or UNFINISHED)]
        items = self.read(wanted, limit=limit)
        rank = {
            ExperimentState.running: 0,
            ExperimentState.paused: 0,
            ExperimentState.queued: 1,
            ExperimentState.waiting_for_approval: 2,
        }
        far = datetime.max.replace(tzinfo=UTC)
        return sorted(
            items,
            key=lambda e: (rank.get(e.state, 3), e.priority.rank, e.scheduled or far),
        )

    def history(self, limit: int = 50) -> list[Experiment]:
        """Finished experiments, most recent first."""
        finished = [s for s in ExperimentState if s.finished]
        return self.read(finished, limit=limit, sort=FlowRunSort.END_TIME_DESC)

    def waiting(self) -> list[Experiment]:
        """Queued experiments in the order they will run (one held by an edit this moment in
        its place, its message saying so)."""
        return [e for e in self.list([ExperimentState.queued])]

    def current(self) -> Experiment | None:
        """The experiment running (or paused) on the lab now, if any."""
        active = self.read(ACTIVE)
        return active[0] if active else None

    def wait_for(
        self,
        experiment_id: str,
        states: Iterable[ExperimentState | str] | None = None,
        timeout: float = 60.0,
        poll: float = 0.05,
    ) -> Experiment:
        """Wait until the experiment reaches one of ``states`` (default: any finished state)."""
        wanted = {ExperimentState(s) for s in states} if states else None
        deadline = time.monotonic() + timeout
        while True:
            exp = self.get(experiment_id)
            if (exp.state in wanted) if wanted else exp.state.finished:
                return exp
            if time.monotonic() > deadline:
                raise QueueError(
                    f"experiment {experiment_id} is still {exp.state.value} after {timeout} s"
                )
            time.sleep(poll)

    # -- ordering ----------------------------------------------------------------------------
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
        if to == "front":
            first = others[0]
            prio, when = first.priority, first.scheduled - tick
        elif to == "back":
            last = others[-1]
            prio, when = last.priority, last.scheduled + tick
        else:
            idx = next((i for i, e in enumerate(others) if e.id == str(behind)), None)
            if idx is None:
                raise ExperimentStateError(f"experiment {behind} is not queued in lab {self.name}")
            ref = others[idx]
            prio = ref.priority
            nxt = others[idx + 1] if idx + 1 < len(others) else None
            if nxt is not None and nxt.priority == prio and nxt.scheduled > ref.scheduled:
                when = ref.scheduled + (nxt.scheduled - ref.scheduled) / 2
                if when <= ref.scheduled or when >= nxt.scheduled:
                    # no room left between the two: push the rest of the class back a little
                    later = [e for e in others[idx + 1 :] if e.priority == prio]
                    for other in later:
                        if other.held_for_edit:
                            raise being_edited(other.id)
                    for k, other in enumerate(later):
                        self._reschedule(other, other.priority, other.scheduled + tick * (k + 2))
                    when = ref.scheduled + tick
            else:
                when = ref.scheduled + tick
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
        run = self.client.read_flow_run(run_id)
        hold = self._hold(run, f"{EDITING} being moved ({uuid4().hex[:12]})", what="the move")
        tags = list(run.tags)
        try:
            if prio != exp.priority:
                moved = [t for t in tags if not t.startswith("priority:")] + [priority_tag(prio)]
                self.client.update_flow_run(run_id, tags=moved)
            mine = Scheduled(scheduled_time=when, message=hold.before.message or None)
            transitions.set_state_after(self.client, run_id, mine, hold.held)
        except Exception as exc:
            with contextlib.suppress(Exception):
                if prio != exp.priority:
                    self.client.update_flow_run(run_id, tags=tags)
                self._release_edit(exp.id, hold, "", reapprove=False)
            if isinstance(exc, StateChanged):
                raise ExperimentStateError(
                    f"experiment {exp.id} could not be moved: it became "
                    f"{transitions.describe(exc.replaced)} meanwhile; it was left so"
                ) from None
            raise
        self.wake()
        return self.get(exp.id)

    # -- cancel and approval -----------------------------------------------------------------
    def cancel(self, experiment_id: str, *, by: str = "", reason: str = "") -> Experiment:
        """Cancel an experiment: a waiting one leaves the queue; a running one is aborted
        through the worker's RunEngine (stop document ``abort``, devices safe) and ends
        Cancelled."""
        exp = self.get(experiment_id)
        why = f"cancelled by {by}" if by else "cancelled"
        if reason:
            why += f": {reason}"
        if exp.state.finished:
            raise ExperimentStateError(
                f"experiment {experiment_id} already ended ({exp.state.value})"
            )
        if exp.state in WAITING:
            result = self.client.set_flow_run_state(UUID(exp.id), Cancelled(message=why))
            if result.status.value == "ACCEPT":
                return self.get(exp.id)
            exp = self.get(exp.id)  # claimed meanwhile: cancel it as a running one
            if exp.state.finished:
                return exp
        self.client.set_flow_run_state(UUID(exp.id), State(type=StateType.CANCELLING, message=why))
        try:
            self._to_worker(exp, {"cmd": "cancel", "experiment": exp.id, "reason": why})
        except WorkerUnavailable:
            # nobody runs it any more: nothing to abort; the next worker start makes devices safe
            self.client.set_flow_run_state(
                UUID(exp.id), Cancelled(message=why + " (its worker was gone)"), force=True
            )
        return self.get(exp.id)

    def approve(self, experiment_id: str, *, by: str) -> Experiment:
        """Let an experiment that waits for approval join the queue (in submission order)."""
        exp = self.get(experiment_id)
        if exp.state != ExperimentState.waiting_for_approval:
            raise ExperimentStateError(
                f"experiment {experiment_id} is {exp.state.value}, not waiting for approval"
            )
        result = self.client.set_flow_run_state(
            UUID(exp.id), Scheduled(scheduled_time=exp.created, message=f"approved by {by}")
        )
        if result.status.value != "ACCEPT":
            raise ExperimentStateError(
                f"experiment {experiment_id} could not be approved: "
                f"{getattr(result.details, 'reason', '')}"
            )
        self.wake()
        return self.get(exp.id)

    def reject(self, experiment_id: str, *, by: str, reason: str = "") -> Experiment:
        """Refuse an experiment that waits for approval; it ends Cancelled."""
        exp = self.get(experiment_id)
        if exp.state != ExperimentState.waiting_for_approval:
            raise ExperimentStateError(
                f"experiment {experiment_id} is {exp.state.value}, not waiting for approval"
            )
        msg = f"rejected by {by}" + (f": {reason}" if reason else "")
        self.client.set_flow_run_state(UUID(exp.id), Cancelled(message=msg))
        return self.get(exp.id)

    # -- the lab -----------------------------------------------------------------------------
    def hold(self) -> None:
        """Hold the lab: the current experiment finishes, no further one starts.

        The lab's work pool is paused, so Prefect's UI shows the hold too.
        """
        self.deployment_id  # noqa: B018 (make sure the pool exists)
        self.client.update_work_pool(pool_name(self.name), WorkPoolUpdate(is_paused=True))
        self.broadcast({"cmd": "hold"})

    def release(self) -> None:
        """Release a held lab: queued experiments start again."""
        self.deployment_id  # noqa: B018
        self.client.update_work_pool(pool_name(self.name), WorkPoolUpdate(is_paused=False))
        self.broadcast({"cmd": "release"})

    def is_held(self) -> bool:
        return bool(self.client.read_work_pool(pool_name(self.name)).is_paused)

    # -- the running plan --------------------------------------------------------------------
    def pause(self, *, immediate: bool = False) -> dict[str, Any]:
        """Pause the running plan at its next checkpoint (``immediate``: now, rewinding to the
        last checkpoint)."""
        return self._to_current({"cmd": "pause", "defer": not immediate})

    def resume(self) -> dict[str, Any]:
        """Resume the paused plan."""
        return self._to_current({"cmd": "resume"})

    def stop(self) -> dict[str, Any]:
        """End the running plan cleanly (exit status ``success``); the experiment completes."""
        return self._to_current({"cmd": "stop"})

    def abort(self, reason: str = "") -> dict[str, Any]:
        """Abort the running plan (exit status ``abort``); devices go safe; it ends Cancelled."""
        return self._to_current({"cmd": "abort", "reason": reason})

    def answer(self, experiment_id: str, value: Any = True) -> dict[str, Any]:
        """Answer the question the experiment's plan asked the operator."""
        exp = self.get(experiment_id)
        if exp.state not in ACTIVE:
            raise ExperimentStateError(f"experiment {experiment_id} is {exp.state.value}")
        return self._to_worker(exp, {"cmd": "answer", "experiment": exp.id, "value": value})

    def question(self, experiment_id: str) -> Question | None:
        """The question the experiment's plan waits on the operator to answer, if any."""
        exp = self.get(experiment_id)
        if exp.state not in ACTIVE:
            return None
        info = self._to_worker(exp, {"cmd": "status"})
        asked = info.get("question")
        if not asked or asked.get("experiment_id") != exp.id:
            return None
        return Question.model_validate(asked)

    def _to_current(self, message: dict[str, Any]) -> dict[str, Any]:
        exp = self.current()
        if exp is None:
            raise ExperimentStateError(f"nothing runs on lab {self.name} now")
        message["experiment"] = exp.id
        return self._to_worker(exp, message)

    # -- workers -----------------------------------------------------------------------------
    def workers(self, *, fresh: bool = False) -> list[dict[str, Any]]:
        """The live workers of this lab, as they announce themselves."""
        stamp, cached = self._workers_cache
        if not fresh and time.monotonic() - stamp < 2.0:
            return cached
        prefix = control.lab_prefix(self.name)
        found = []
        for var in self.client.read_variables():
            alive = isinstance(var.value, dict) and control.worker_is_alive(var.value)
            if var.name.startswith(prefix) and alive:
                found.append(var.value)
        self._workers_cache = (time.monotonic(), found)
        return found

    def _to_worker(self, exp: Experiment, message: dict[str, Any]) -> dict[str, Any]:
        workers = self.workers(fresh=True)
        target = [w for w in workers if w.get("id") == exp.worker] or [
            w for w in workers if w.get("current") == exp.id
        ]
        if not target:
            raise WorkerUnavailable(f"no live worker runs experiment {exp.id} of lab {self.name}")
        answer = control.request(target[0]["control"], message)
        if not answer.get("ok"):
            raise ExperimentStateError(answer.get("error", "the worker refused"))
        return answer

    def broadcast(self, message: dict[str, Any], timeout: float = 1.0) -> int:
        """Send a message to every live worker of the lab; how many answered."""
        if not self.notify:
            return 0
        n = 0
        for worker in self.workers():
            try:
                control.request(worker["control"], message, timeout=timeout)
                n += 1
            except WorkerUnavailable:
                continue
        return n

    def wake(self) -> int:
        """Tell the lab's workers there is work (they also poll, more slowly)."""
        return self.broadcast({"cmd": "wake"})


__all__ = [
    "ExperimentQueue",
    "PlanRegistryLike",
    "being_edited",
    "default_registry",
]
