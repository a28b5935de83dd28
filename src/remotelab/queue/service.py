"""The experiment queue of one lab, on Prefect: submit, list, order, cancel, approve, hold.

Prefect's database is the single source of truth: every call here reads or changes flow runs
of the lab's deployment, so Prefect's UI and CLI show the same queue. Controls Prefect cannot
carry (pause, resume, stop, abort, answers, prompt wake-ups) go to the lab's worker over zmq.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterable
from typing import Any, Protocol
from uuid import UUID, uuid4

from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.states import Cancelled, Paused, Scheduled, State

from remotelab.errors import ExperimentStateError, QueueError, WorkerUnavailable
from remotelab.keys.signing import Signer, load_or_make_signer
from remotelab.notify import Event, EventKind, Notifier
from remotelab.queue import listing, samples, signatures
from remotelab.queue.commands import Cancel
from remotelab.queue.editing import Editing, being_edited
from remotelab.queue.messages import AWAITING_APPROVAL
from remotelab.queue.models import (
    WAITING,
    Experiment,
    ExperimentState,
    Priority,
    devices_of,
    lab_tag,
    needs_approval,
    prefect_types,
    priority_tag,
    queue_order,
)
from remotelab.queue.ordering import Ordering
from remotelab.queue.prefect_lab import LabOnPrefect, PrefectLab
from remotelab.queue.subscriptions import LabSubscriptions, lab_notifier
from remotelab.queue.waking import Waker
from remotelab.queue.workers import ACTIVE, WorkerControl

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


class ExperimentQueue(Editing, Ordering, WorkerControl):
    """The queue of one lab on a Prefect server.

    ``lab`` is a :class:`~remotelab.lab.Lab` (or its spec): its name picks the work pool and
    deployment; its plan registry validates submissions. ``registry`` overrides the registry;
    ``prefect`` the lab's Prefect adapter (default: a :class:`PrefectLab` on ``api_url``);
    ``notifier`` who is told of a submission waiting for approval (default: the lab's).
    """

    def __init__(
        self,
        lab: Any,
        *,
        api_url: str | None = None,
        registry: PlanRegistryLike | None = None,
        notify: bool = True,
        prefect: LabOnPrefect | None = None,
        notifier: Notifier | None = None,
        signer: Signer | None = None,
    ):
        self.lab = lab
        self.name = lab_name_of(lab)
        self.prefect: LabOnPrefect = prefect or PrefectLab(self.name, api_url)
        self.api_url = getattr(self.prefect, "api_url", "")
        self._registry = registry
        self.notify = notify
        self._workers_cache = (0.0, [])
        self._status_cache: tuple[float, dict[str, str]] = (0.0, {})
        self._waker = Waker(self._live_workers)
        self._notifier = notifier
        self._signer = signer
        #: the lab's notification subscriptions (its file's and its users')
        self.subscriptions = LabSubscriptions(lab, self.prefect)

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """This thread's Prefect client (of a :class:`PrefectLab`)."""
        return getattr(self.prefect, "client", None)

    @property
    def registry(self) -> PlanRegistryLike:
        if self._registry is None:
            self._registry = default_registry(self.lab)
        return self._registry

    @property
    def deployment_id(self) -> UUID:
        return self.prefect.deployment_id

    @property
    def signer(self) -> Signer:
        """The submission key this queue signs what it accepts with (default: the keys
        directory's, made at first use; see :mod:`remotelab.queue.signatures`)."""
        if self._signer is None:
            self._signer = load_or_make_signer()
        return self._signer

    def ensure(self) -> UUID:
        """Create the lab's work pool, queues and deployment if missing (idempotent)."""
        return self.prefect.ensure()

    @property
    def notifier(self) -> Notifier:
        """The lab's notifier (default: :func:`~remotelab.queue.subscriptions.lab_notifier`,
        made at its first use)."""
        if self._notifier is None:
            self._notifier = lab_notifier(self.lab, self.prefect)
        return self._notifier

    def close(self) -> None:
        self._waker.close()
        if self._notifier is not None:
            self._notifier.close()
        self.prefect.close()

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
        audit_head: str = "",
    ) -> Experiment:
        """Validate and queue an experiment; it waits for approval if the lab requires it.

        ``audit_head``: the gateway's audit-log head hash as it accepts the submission,
        recorded in the provenance of the experiment's runs."""
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
        definition = getattr(self.registry, "definition", lambda _: None)(plan)
        consumed = samples.consumed_sample(definition, params)
        if consumed:
            samples.note_used_up(self)  # validation refuses a sample already used up
        validated = self.registry.validate(plan, params, lab=self.lab, role=role)
        approval = needs_approval(self.lab, plan, role)
        if approval:
            state: State = Paused(
                name=AWAITING_APPROVAL,
                message=f"submitted by {submitter} ({role}); waits for a manager's approval",
            )
        else:
            state = Scheduled(message=f"submitted by {submitter} ({role})")
        submission = uuid4().hex
        parameters = signatures.signed(
            self.signer,
            self.name,
            submission,
            {
                "plan": plan,
                "params": params,
                "submitter": submitter,
                "role": role,
                "devices": devices_of(validated),
                **({"audit_head": audit_head} if audit_head else {}),
            },
            priority=prio.value,
            approval=signatures.APPROVAL_REQUIRED if approval else signatures.NO_APPROVAL,
        )
        run = self.prefect.create_run(
            parameters,
            state,
            idempotency_key=submission,
            tags=[
                lab_tag(self.name),
                priority_tag(prio),
                f"plan:{plan}",
                f"submitter:{submitter}",
                *samples.consumes_tags(definition),
            ],
            work_queue=prio.value,
        )
        exp = Experiment.from_flow_run(run)
        if approval:
            self.notifier.send(
                Event(
                    kind=EventKind.awaiting_approval,
                    lab=self.name,
                    experiment_id=exp.id,
                    submitter=submitter,
                    plan=plan,
                    message=f"{submitter} ({role}) submitted {plan}; it waits for a manager's "
                    f"approval (remotelab approve {exp.id})",
                )
            )
        else:
            self.wake()
        return exp

    # -- reading ------------------------------------------------------------------------------
    def get(self, experiment_id: str | UUID) -> Experiment:
        """One experiment by id (or a unique prefix of it); :class:`ExperimentNotFound` if it
        is not in this lab's queue."""
        return self._read_run(experiment_id)[1]

    def _read_run(self, experiment_id: str | UUID) -> tuple[Any, Experiment]:
        """One read of an experiment's flow run (its id, or a unique prefix of it): the run and
        the experiment it is."""
        run = self.prefect.read_run(listing.resolve_id(self, experiment_id))
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
        wanted = {ExperimentState(s) for s in states} if states is not None else None
        types = prefect_types(wanted) if wanted is not None else None
        runs = self.prefect.runs(types, tags=tags, sort=sort, limit=limit, offset=offset)
        out = [Experiment.from_flow_run(r) for r in runs]
        return [e for e in out if wanted is None or e.state in wanted]

    def list(
        self, states: Iterable[ExperimentState | str] | None = None, *, limit: int | None = None
    ) -> list[Experiment]:
        """Experiments in queue order: running/paused first, then queued by priority and
        position, then those awaiting approval. ``states`` defaults to the unfinished ones."""
        wanted = [ExperimentState(s) for s in (states or UNFINISHED)]
        return sorted(self.read(wanted, limit=limit), key=queue_order)

    def count(
        self, states: Iterable[ExperimentState], *, tags: builtins.list[str] | None = None
    ) -> int:
        """How many finished experiments are in ``states`` with every tag in ``tags``
        (counted by Prefect, without reading them)."""
        wanted = [ExperimentState(s) for s in states]
        if not all(s.finished for s in wanted):
            raise QueueError("only finished experiments are counted without reading them")
        return self.prefect.count(prefect_types(wanted), tags=tags)

    def history(self, limit: int = 50) -> builtins.list[Experiment]:
        """Finished experiments, most recent first."""
        finished = [s for s in ExperimentState if s.finished]
        return self.read(finished, limit=limit, sort=FlowRunSort.END_TIME_DESC)

    def waiting(self) -> builtins.list[Experiment]:
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
            if self.prefect.set_state(exp.id, Cancelled(message=why)).accepted:
                return self.get(exp.id)
            exp = self.get(exp.id)  # claimed meanwhile: cancel it as a running one
            if exp.state.finished:
                return exp
        self.prefect.set_state(exp.id, State(type=StateType.CANCELLING, message=why))
        try:
            self._to_worker(exp, Cancel(experiment=exp.id, reason=why))
        except WorkerUnavailable:
            # nobody runs it any more: nothing to abort; the next worker start makes devices safe
            self.prefect.set_state(
                exp.id, Cancelled(message=why + " (its worker was gone)"), force=True
            )
        return self.get(exp.id)

    def approve(self, experiment_id: str, *, by: str) -> Experiment:
        """Let an experiment that waits for approval join the queue (in submission order).

        The approval is signed over the experiment as the manager approved it (labels of its
        run): an edit made meanwhile makes it wait for an approval again."""
        run, exp = self._read_run(experiment_id)
        if exp.state != ExperimentState.waiting_for_approval:
            raise ExperimentStateError(
                f"experiment {experiment_id} is {exp.state.value}, not waiting for approval"
            )
        self.prefect.update_labels(
            exp.id, signatures.approval_labels(self.signer, self.name, run, by)
        )
        result = self.prefect.set_state(
            exp.id, Scheduled(scheduled_time=exp.created, message=f"approved by {by}")
        )
        if not result.accepted:
            raise ExperimentStateError(
                f"experiment {experiment_id} could not be approved: {result.reason}"
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
        self.prefect.set_state(exp.id, Cancelled(message=msg))
        return self.get(exp.id)

    # -- the lab -----------------------------------------------------------------------------
    def hold(self) -> None:
        """Hold the lab: the current experiment finishes, no further one starts.

        The lab's work pool is paused, so Prefect's UI shows the hold too.
        """
        self.prefect.set_held(True)
        self.notify_held(True)

    def release(self) -> None:
        """Release a held lab: queued experiments start again."""
        self.prefect.set_held(False)
        self.notify_held(False)

    def is_held(self) -> bool:
        """Whether the lab is held."""
        return self.prefect.is_held()


__all__ = [
    "ExperimentQueue",
    "PlanRegistryLike",
    "being_edited",
    "default_registry",
]
