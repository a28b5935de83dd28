"""The lab worker: one long-lived process per lab that runs the lab's experiments.

It keeps the lab's devices connected and one ``RunEngine`` alive across experiments (no process
per experiment), claims the lab's next flow run through Prefect's own state orchestration
(Scheduled → Pending → Running; a claim another worker won is refused by Prefect), runs the
plan, and records the outcome as Prefect states, labels, logs and an artifact. New work and
controls arrive over a zmq control channel (see :mod:`remotelab.queue.control`); a short poll
of Prefect backs it up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted
from prefect.client.schemas.actions import LogCreate, VariableCreate, VariableUpdate
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
from prefect.states import (
    Cancelled,
    Completed,
    Crashed,
    Failed,
    Paused,
    Pending,
    Running,
    Scheduled,
    State,
)

from remotelab.errors import SafeStateError
from remotelab.queue import control, transitions
from remotelab.queue.editing import reapproval_after
from remotelab.queue.models import (
    AWAITING_APPROVAL,
    AWAITING_OPERATOR,
    PAUSED_NAME,
    Experiment,
    Priority,
    Question,
    held_for_edit,
    pool_name,
    priority_tag,
    state_of,
)
from remotelab.queue.prefect_api import ClientPerThread, ensure_lab
from remotelab.queue.service import PlanRegistryLike, default_registry
from remotelab.queue.transitions import StateChanged
from remotelab.worker.operator import ASK_OPERATOR

log = logging.getLogger("remotelab.worker")

DocumentCallback = Callable[[str, dict[str, Any]], Any]
#: a queue shorter than this is read in one request and ordered by the worker
CLAIM_WINDOW = 20
#: on SIGTERM/SIGINT, how many times (a second apart) the worker asks the RunEngine to abort
SHUTDOWN_ABORT_TRIES = 30
#: a run held by an edit longer than this (s) is a stale hold (its editor died or lost Prefect):
#: a worker puts it back in the queue as it was before the edit
EDIT_GRACE = 60.0
#: how often (s) a worker looks for stale edit holds while it serves the lab
EDIT_CHECK_INTERVAL = 10.0


def _tag(worker_id: str) -> str:
    return f"[worker {worker_id}]"


class LabWorker:
    """Runs one lab's experiments, one at a time, on one RunEngine.

    ``subscribers`` receive every ``(name, doc)`` the RunEngine emits (the run store and the
    document stream plug in here). ``registry`` defaults to the lab's plan registry.
    """

    def __init__(
        self,
        lab: Any,
        *,
        api_url: str | None = None,
        registry: PlanRegistryLike | None = None,
        subscribers: Sequence[DocumentCallback] = (),
        control_bind: str = "tcp://127.0.0.1:0",
        poll_interval: float = 1.0,
        grace: float = 0.0,
        data_url: str | None = None,
        worker_id: str | None = None,
        edit_grace: float = EDIT_GRACE,
        edit_check_interval: float = EDIT_CHECK_INTERVAL,
    ):
        self.lab = lab
        self.name: str = lab.name
        self.id = (
            worker_id or f"{socket.gethostname().split('.')[0]}-{os.getpid()}-{uuid4().hex[:6]}"
        )
        self.poll_interval = poll_interval
        self.grace = grace
        self.edit_grace = edit_grace
        self.edit_check_interval = edit_check_interval
        self._edits_checked_at: float | None = None
        #: edit holds seen: state id → when first seen (this worker's monotonic clock)
        self._holds_seen: dict[Any, float] = {}
        self._holds_lock = threading.Lock()
        self.data_url = data_url
        self._clients = ClientPerThread(api_url)
        self._registry = registry
        self.RE = RunEngine({}, context_managers=[], call_returns_result=True)
        for callback in subscribers:
            self.RE.subscribe(callback)
        self.RE.subscribe(self._on_document)
        self.RE.register_command(ASK_OPERATOR, self._ask_operator)
        self.control_bind = control_bind
        self.control: control.ControlServer | None = None
        self.deployment_id: UUID | None = None
        self.current: Experiment | None = None
        self.question: Question | None = None
        self.completed = 0
        self._question_future: tuple[asyncio.AbstractEventLoop, asyncio.Future] | None = None
        self._commands: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._closed = threading.Event()
        self._cancel_reason: str | None = None
        self._lock = threading.RLock()
        self._uids: list[str] = []
        self._exit_statuses: list[str] = []
        self._threads: list[threading.Thread] = []
        self._post: queue.Queue[Callable[[], Any] | None] = queue.Queue()
        self._held, self._held_at, self._held_stale = False, 0.0, True
        self._candidates: list[Any] = []
        self._candidates_at, self._candidates_stale = 0.0, True

    # -- life cycle --------------------------------------------------------------------------
    @property
    def client(self):
        return self._clients.get()

    @property
    def registry(self) -> PlanRegistryLike:
        if self._registry is None:
            self._registry = default_registry(self.lab)
        return self._registry

    def start(self) -> list[Experiment]:
        """Connect: create the lab's Prefect objects, open the control channel, announce this
        worker, mark experiments left running by dead workers Crashed and make the devices
        safe. Returns the experiments it marked crashed."""
        self.deployment_id = ensure_lab(self.client, self.name)
        self.control = control.ControlServer(self._handle, self.control_bind).start()
        self._announce(create=True)
        crashed = self.recover()
        self._edits_checked_at = time.monotonic()
        self.restore_stale_edits()
        busy = [w for w in self.peers() if w.get("current")]
        if busy:  # another worker of this lab is mid-experiment: leave its devices alone
            log.info(
                "worker %s runs %s now: not resetting the devices",
                busy[0]["id"],
                busy[0]["current"],
            )
        else:
            self._safe_state("worker start")
        for target, name in (
            (self._heartbeat_loop, "heartbeat"),
            (self._watch_loop, "watch"),
            (self._post_loop, "post"),
        ):
            thread = threading.Thread(target=target, name=f"remotelab-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("worker %s serves lab %s on %s", self.id, self.name, self.control.endpoint)
        return crashed

    def close(self) -> None:
        """Stop serving: close the control channel and withdraw the announcement."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._stopping.set()
        self._wake.set()
        self._post.put(None)
        for thread in self._threads:
            thread.join(5)
        if self.control is not None:
            self.control.close()
        with contextlib.suppress(Exception):
            self.client.delete_variable_by_name(control.variable_name(self.name, self.id))
        self._clients.close()

    def __enter__(self) -> LabWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_forever(self) -> None:
        """Serve the lab until SIGTERM/SIGINT (or :meth:`shutdown`)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda signum, _f: self.shutdown(signal.Signals(signum).name))
        while not self._stopping.is_set():
            self._wake.clear()
            if self.run_next() is None and not self._stopping.is_set():
                self._wake.wait(self.poll_interval)

    def shutdown(self, reason: str = "shutdown") -> None:
        """Start no more experiments; abort the current one (after ``grace`` seconds)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._wake.set()
        if self.current is not None:
            why = f"aborted: the worker was stopped ({reason})"

            def later() -> None:
                if self.grace > 0:
                    deadline = time.monotonic() + self.grace
                    while self.current is not None and time.monotonic() < deadline:
                        time.sleep(0.05)
                # ask again until the experiment has ended: an abort that meets the RunEngine
                # between two states is refused, and must not leave the plan running
                tries = 0
                while self.current is not None and tries < SHUTDOWN_ABORT_TRIES:
                    reply = self._interrupt("abort", {"reason": why})
                    if not reply.get("ok"):
                        log.warning("abort on %s: %s; trying again", reason, reply.get("error"))
                    tries += 1
                    for _ in range(20):  # up to 1 s for the experiment to end
                        if self.current is None:
                            return
                        time.sleep(0.05)

            threading.Thread(target=later, name="remotelab-shutdown", daemon=True).start()

    # -- announcement, heartbeat, watching for cancellation -----------------------------------
    def _info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "lab": self.name,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "control": self.control.endpoint if self.control else "",
            "heartbeat": control.now_iso(),
            "current": self.current.id if self.current else None,
            "question": self.question.model_dump() if self.question else None,
            "re_state": str(self.RE.state),
        }

    def _announce(self, create: bool = False) -> None:
        name = control.variable_name(self.name, self.id)
        if create:
            with contextlib.suppress(Exception):
                self.client.delete_variable_by_name(name)
            self.client.create_variable(
                VariableCreate(name=name, value=self._info(), tags=["remotelab", "worker"])
            )
        else:
            self.client.update_variable(VariableUpdate(name=name, value=self._info()))

    def _heartbeat_loop(self) -> None:
        while not self._stopping.wait(control.HEARTBEAT_INTERVAL):
            try:
                self._announce()
                self.client.send_worker_heartbeat(
                    pool_name(self.name), f"remotelab {self.id}", control.HEARTBEAT_INTERVAL
                )
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
            # here, not between experiments: a long experiment must not keep a hold waiting
            self._check_edits()

    def _watch_loop(self) -> None:
        """Notice a cancel requested in Prefect itself (its UI or CLI set Cancelling)."""
        while not self._stopping.wait(self.poll_interval):
            exp = self.current
            if exp is None or self._cancel_reason is not None:
                continue
            try:
                run = self.client.read_flow_run(UUID(exp.id))
            except Exception:
                continue
            cancelling = run.state is not None and run.state.type == StateType.CANCELLING
            if cancelling and self.current is not None and self.current.id == exp.id:
                self._interrupt("cancel", {"reason": run.state.message or "cancelled"})

    def _post_loop(self) -> None:
        """Writes that may lag behind the experiment (logs, artifacts), in order."""
        while True:
            job = self._post.get()
            if job is None:
                return
            try:
                job()
            except Exception as exc:
                log.warning("could not record in Prefect: %s", exc)

    def peers(self) -> list[dict[str, Any]]:
        """The other live workers of this lab, as they announce themselves."""
        prefix = control.lab_prefix(self.name)
        mine = control.variable_name(self.name, self.id)
        return [
            v.value
            for v in self.client.read_variables()
            if v.name.startswith(prefix)
            and v.name != mine
            and isinstance(v.value, dict)
            and control.worker_is_alive(v.value)
        ]

    # -- crash recovery ----------------------------------------------------------------------
    def recover(self) -> list[Experiment]:
        """Mark Crashed the lab's experiments still active whose worker is gone."""
        stale = self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(
                        any_=[
                            StateType.PENDING,
                            StateType.RUNNING,
                            StateType.PAUSED,
                            StateType.CANCELLING,
                        ]
                    )
                )
            ),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[self.deployment_id])),
        )
        crashed = []
        for run in stale:
            if run.state.type == StateType.PAUSED and run.state.name == AWAITING_APPROVAL:
                continue
            if held_for_edit(run.state):
                continue  # held by an edit: it never started (see restore_stale_edits)
            exp = Experiment.from_flow_run(run)
            owner = exp.worker
            if owner == self.id:
                continue
            if owner is not None:
                var = self.client.read_variable_by_name(control.variable_name(self.name, owner))
                if var is not None and isinstance(var.value, dict):
                    if control.worker_is_alive(var.value):
                        continue
                    with contextlib.suppress(Exception):
                        self.client.delete_variable_by_name(var.name)
            message = (
                f"{_tag(owner or 'unknown')} crashed: its worker ended without finishing it "
                f"(found by worker {self.id} at start-up); documents it emitted are kept; "
                "not re-run"
            )
            result = self.client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            if result.status.value == "ACCEPT":
                crashed.append(Experiment.from_flow_run(self.client.read_flow_run(run.id)))
                log.warning(
                    "experiment %s was left %s by a dead worker: crashed", run.id, run.state.name
                )
        return crashed

    def _check_edits(self) -> None:
        """Restore stale edit holds every ``edit_check_interval`` seconds (from the heartbeat
        thread, so a long experiment does not hold them up)."""
        now = time.monotonic()
        due = self._edits_checked_at is None or (
            now - self._edits_checked_at >= self.edit_check_interval
        )
        if not due:
            return
        self._edits_checked_at = now
        try:
            self.restore_stale_edits()
        except Exception as exc:
            log.warning("could not look for stale edit holds: %s", exc)

    def restore_stale_edits(self) -> list[Experiment]:
        """Put back in the queue the lab's runs an edit has held longer than ``edit_grace``.

        An edit holds a queued run Pending (``[editing] …``) for the moment of the change; if
        its editor dies or loses Prefect before letting go, the run would wait for ever. It
        never started, so it is not crashed: it goes back to the Scheduled state the hold
        replaced (from the run's state history), in its place, with its parameters as they
        are — or to wait for approval, if the hold says the edit needs it again and the edit
        changed the parameters. A hold is timed on this worker's own clock from when it first
        saw that very state (no clock is compared with Prefect's), and is restored only if that
        same state still directly precedes the restoring one
        (:mod:`~remotelab.queue.transitions`). Returns the experiments restored.
        """
        with self._holds_lock:
            return self._restore_stale_edits()

    def _restore_stale_edits(self) -> list[Experiment]:
        held = self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PENDING]))
            ),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[self.deployment_id])),
        )
        now = time.monotonic()
        seen = {run.state.id: self._holds_seen.get(run.state.id, now) for run in held}
        self._holds_seen = seen
        restored = []
        for run in held:
            if not held_for_edit(run.state) or now - seen[run.state.id] < self.edit_grace:
                continue
            hold = run.state
            states = transitions.history(self.client, run.id)
            at = next((i for i, st in enumerate(states) if st.id == hold.id), None)
            if at is None or at != len(states) - 1:
                continue  # let go (or claimed) since it was read
            before = states[at - 1] if at else None
            after = reapproval_after(hold.message)
            force = False
            if after is not None and len((run.parameters or {}).get("edits") or []) > after:
                state: State = Paused(
                    name=AWAITING_APPROVAL,
                    message="edited by an edit that did not end; waits for a manager's "
                    "approval again",
                )
                force = True  # Pending → Paused is not a transition Prefect orchestrates
            elif before is not None and before.type == StateType.SCHEDULED:
                state = Scheduled(
                    scheduled_time=before.state_details.scheduled_time,
                    message=before.message or "back in the queue after an edit that did not end",
                )
            else:  # no queued state before it (never the case for a hold an edit took)
                state = Scheduled(
                    scheduled_time=hold.state_details.scheduled_time or run.expected_start_time,
                    message="back in the queue after an edit that did not end",
                )
            try:
                transitions.set_state_after(self.client, run.id, state, hold.id, force=force)
            except StateChanged as exc:
                log.info("experiment %s: stale hold not restored: %s", run.id, exc)
                continue
            log.warning(
                "experiment %s was held by an edit for %.0f s: %s",
                run.id,
                now - seen[hold.id],
                "waits for approval again" if force else "back in the queue",
            )
            restored.append(Experiment.from_flow_run(self.client.read_flow_run(run.id)))
            self._candidates_stale = True
        return restored

    # -- claiming ----------------------------------------------------------------------------
    def is_held(self) -> bool:
        return bool(self.client.read_work_pool(pool_name(self.name)).is_paused)

    def held(self) -> bool:
        """Whether the lab is held (its work pool paused); re-read at most every poll
        interval, and at once after a wake-up or hold message."""
        now = time.monotonic()
        if self._held_stale or now - self._held_at > self.poll_interval:
            self._held = self.is_held()
            self._held_at, self._held_stale = now, False
        return self._held

    def candidates(self) -> list[Any]:
        """The next few queued flow runs of the lab, in the order they should run.

        The list read last is reused until a wake-up message (new work, a move, a cancel) or
        the poll interval makes it stale; Prefect still refuses a claim on a run that is no
        longer queued.
        """
        if (
            self._candidates
            and not self._candidates_stale
            and time.monotonic() - self._candidates_at < self.poll_interval
        ):
            return list(self._candidates)
        self._candidates_stale = False
        self._candidates_at = time.monotonic()
        scheduled = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
        deployment = DeploymentFilter(id=DeploymentFilterId(any_=[self.deployment_id]))
        runs = self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=scheduled),
            deployment_filter=deployment,
            sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC,
            limit=CLAIM_WINDOW,
        )
        if len(runs) >= CLAIM_WINDOW:  # a long queue: ask for the best of each priority
            runs = []
            for prio in Priority:
                runs = self.client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        state=scheduled, tags=FlowRunFilterTags(all_=[priority_tag(prio)])
                    ),
                    deployment_filter=deployment,
                    sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC,
                    limit=CLAIM_WINDOW,
                )
                if runs:
                    break
        self._candidates = sorted(runs, key=lambda r: Experiment.from_flow_run(r).order_key())
        return list(self._candidates)

    def claim(self) -> Any | None:
        """Claim the lab's next queued flow run (highest priority, then earliest), or None.

        Prefect's orchestration decides: Scheduled → Pending is refused to all but one
        claimer, so two workers never run the same experiment.
        """
        if self._stopping.is_set() or self.held():
            return None
        for run in self.candidates():
            self._candidates = [r for r in self._candidates if r.id != run.id]
            result = self.client.set_flow_run_state(
                run.id, Pending(message=f"{_tag(self.id)} claimed")
            )
            if result.status.value != "ACCEPT":
                self._candidates_stale = True
                continue  # another worker took it, or it is not due yet
            if not self._claim_was_fresh(run.id):
                self._candidates_stale = True
                continue
            result = self.client.set_flow_run_state(
                run.id,
                Running(
                    message=f"{_tag(self.id)} running (pid {os.getpid()} on {socket.gethostname()})"
                ),
            )
            if result.status.value != "ACCEPT":
                self._settle_refused(run.id)
                continue
            # read it again: the candidate list may predate an edit of its parameters, and
            # no edit can change them now that it is ours
            return self.client.read_flow_run(run.id)
        return None

    def _claim_was_fresh(self, run_id: UUID) -> bool:
        """Whether the run we just moved to Pending was still queued.

        Prefect lets a finished (Completed, Failed, Crashed) run go back to Pending — a
        re-run — so a claim on a run another worker has meanwhile finished is accepted.
        The state before our Pending tells: if it is not Scheduled, put it back and let go.
        """
        states = sorted(self.client.read_flow_run_states(run_id), key=lambda st: st.timestamp)
        if len(states) < 2 or states[-1].type != StateType.PENDING:
            return False
        before = states[-2]
        if before.type == StateType.SCHEDULED:
            return True
        self.client.set_flow_run_state(
            run_id,
            State(type=before.type, name=before.name, message=before.message),
            force=True,
        )
        return False

    def _settle_refused(self, run_id: UUID) -> None:
        """A claimed run Prefect would not let run (cancelled meanwhile): end it cleanly."""
        run = self.client.read_flow_run(run_id)
        if run.state.type == StateType.CANCELLING:
            self.client.set_flow_run_state(
                run_id, Cancelled(message=run.state.message or "cancelled before it started")
            )

    def run_next(self) -> Experiment | None:
        """Claim and run the next experiment; returns it when it has ended, or None."""
        run = self.claim()
        if run is None:
            return None
        return self.execute(run)

    # -- running -----------------------------------------------------------------------------
    def _set_state(self, run_id: str, state: State, *, force: bool = False) -> bool:
        result = self.client.set_flow_run_state(UUID(run_id), state, force=force)
        return result.status.value == "ACCEPT"

    def execute(self, run: Any) -> Experiment:
        """Run a claimed (Running) flow run's plan on the RunEngine and record the outcome."""
        exp = Experiment.from_flow_run(run)
        params = run.parameters or {}
        with self._lock:
            self.current = exp
            self._cancel_reason = None
            self._uids, self._exit_statuses = [], []
            self.question = None
        while not self._commands.empty():
            self._commands.get_nowait()
        started = time.monotonic()
        error: BaseException | None = None
        tb = ""
        try:
            validated = self.registry.validate(
                exp.plan,
                dict(params.get("params") or {}),
                lab=self.lab,
                role=str(params.get("role") or "researcher"),
            )
            md = {
                "experiment_id": exp.id,
                "submitter": exp.submitter,
                "lab": self.name,
                "priority": exp.priority.value,
                "worker": self.id,
            }
            if exp.edits:
                md["edits"] = exp.edits
            plan = self.registry.build(validated, self.lab, md=md)
            if self._cancel_reason is None:
                self._run_plan(plan)
        except Exception as exc:
            error, tb = exc, traceback.format_exc()
        duration = time.monotonic() - started
        return self._finish(exp, error, tb, duration)

    def _run_plan(self, plan: Any) -> None:
        try:
            self.RE(plan)
        except RunEngineInterrupted:
            self._while_paused()

    def _while_paused(self) -> None:
        """The RunEngine stopped on an interruption: serve resume / stop / abort commands."""
        announced = False
        while True:
            state = str(self.RE.state)
            if state == "idle":
                return  # aborted or stopped from the control thread
            if state == "paused" and not announced:
                self._set_state(
                    self.current.id,
                    Paused(
                        name=PAUSED_NAME,
                        message=f"{_tag(self.id)} plan paused at a "
                        "checkpoint; resume, stop or abort it",
                    ),
                )
                announced = True
            try:
                cmd, args = self._commands.get(timeout=0.1)
            except queue.Empty:
                continue
            if cmd == "resume":
                self._set_state(self.current.id, Running(message=f"{_tag(self.id)} resumed"))
                announced = False
                try:
                    self.RE.resume()
                    return
                except RunEngineInterrupted:
                    continue
            if cmd == "stop":
                self._set_state(self.current.id, Running(message=f"{_tag(self.id)} stopping"))
                self.RE.stop()
                return
            if cmd in ("abort", "cancel"):
                self.RE.abort(args.get("reason", ""))
                return

    def _finish(
        self, exp: Experiment, error: BaseException | None, tb: str, duration: float
    ) -> Experiment:
        with self._lock:
            uids, statuses = list(self._uids), list(self._exit_statuses)
            cancel_reason = self._cancel_reason
            self.question = None
        exit_status = statuses[-1] if statuses else None
        if "abort" in statuses:
            exit_status = "abort"
        elif "fail" in statuses:
            exit_status = "fail"
        tag = _tag(self.id)
        if cancel_reason is not None:
            state: State = Cancelled(message=f"{tag} {cancel_reason}")
        elif error is not None:
            state = Failed(message=f"{tag} {type(error).__name__}: {error}")
        elif exit_status == "abort":
            state = Cancelled(message=f"{tag} aborted")
        elif exit_status == "fail":
            state = Failed(message=f"{tag} the plan failed")
        else:
            note = " (stopped early)" if statuses and self._stopped_early else ""
            state = Completed(
                message=f"{tag} completed{note}: {len(uids)} run(s) in {duration:.2f} s"
            )
        unsafe = None
        if state.type != StateType.COMPLETED:
            try:
                self._safe_state(f"experiment {exp.id} ended {state.type.value.lower()}")
                state.message += "; devices safe"
            except SafeStateError as exc:
                unsafe = exc
                state.message += f"; devices NOT safe, lab held: {exc}"
        labels = {"remotelab.run_uids": ",".join(uids), "remotelab.worker": self.id}
        if exit_status:
            labels["remotelab.exit_status"] = exit_status
        state.message += f" [runs {','.join(uids) or '-'}] [exit {exit_status or '-'}]"
        self._post.put(lambda: self.client.update_flow_run_labels(UUID(exp.id), labels))
        if not self._set_state(exp.id, state):
            self._set_state(exp.id, state, force=True)
        with self._lock:
            self.current = None
            self._stopped_early = False
        self.completed += 1
        summary = self._summary(exp, state, exit_status, uids, duration, error, unsafe)
        self._post.put(lambda: self._record(exp, summary, error, tb, unsafe))
        return exp.model_copy(
            update={
                "state": state_of(state.type.value, state.name),
                "state_name": state.name or "",
                "message": state.message or "",
                "ended": datetime.now(UTC),
                "run_uids": uids,
                "exit_status": exit_status,
                "worker": self.id,
                "error": state.message if state.type in (StateType.FAILED,) else None,
            }
        )

    _stopped_early = False

    def _summary(self, exp, state, exit_status, uids, duration, error, unsafe) -> str:
        lines = [
            f"# Experiment {exp.id}",
            "",
            "| | |",
            "|---|---|",
            f"| lab | {self.name} |",
            f"| plan | `{exp.plan}` |",
            f"| parameters | `{exp.params}` |",
            f"| submitter | {exp.submitter} ({exp.role}) |",
            f"| priority | {exp.priority.value} |",
            f"| outcome | {state.type.value.lower()} |",
            f"| exit status | {exit_status or '-'} |",
            f"| duration | {duration:.3f} s |",
            f"| worker | {self.id} |",
        ]
        for uid in uids:
            link = self.data_url.format(uid=uid) if self.data_url else ""
            lines.append(f"| run | `{uid}` {f'[data]({link})' if link else ''} |")
        if error is not None:
            lines += ["", f"**Error:** {type(error).__name__}: {error}"]
        if unsafe is not None:
            lines += ["", f"**Devices not safe; lab held:** {unsafe}"]
        return "\n".join(lines)

    def _record(self, exp: Experiment, summary: str, error, tb: str, unsafe) -> None:
        from prefect.client.schemas.actions import ArtifactCreate

        run_id = UUID(exp.id)
        self.client.request(  # not create_artifact(): it would also emit a client-side event
            "POST",
            "/artifacts/",
            json=ArtifactCreate(
                key="remotelab-experiment-summary",
                type="markdown",
                data=summary,
                description=f"remotelab experiment {exp.id} ({exp.plan})",
                flow_run_id=run_id,
            ).model_dump(mode="json", exclude_unset=True),
        )
        now = datetime.now(UTC)

        def entry(level: int, message: str) -> LogCreate:
            return LogCreate(
                name="remotelab.worker",
                level=level,
                message=message,
                timestamp=now,
                flow_run_id=run_id,
            )

        logs = []  # a completed run's summary is its artifact; failures are logged as well
        if error is not None or unsafe is not None:
            logs.append(entry(logging.INFO, summary))
        if error is not None:
            logs.append(entry(logging.ERROR, tb))
        if unsafe is not None:
            logs.append(
                entry(logging.CRITICAL, f"devices not in their safe state, lab held: {unsafe}")
            )
        if logs:
            self.client.create_logs(logs)

    def _safe_state(self, why: str) -> None:
        """Drive the lab to its safe state; if that fails, hold the lab and re-raise."""
        try:
            self.lab.safe_state()
        except SafeStateError:
            log.error("safe state failed after %s: holding lab %s", why, self.name)
            from prefect.client.schemas.actions import WorkPoolUpdate

            with contextlib.suppress(Exception):
                self.client.update_work_pool(pool_name(self.name), WorkPoolUpdate(is_paused=True))
            raise

    def _on_document(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            with self._lock:
                self._uids.append(doc["uid"])
        elif name == "stop":
            with self._lock:
                self._exit_statuses.append(doc.get("exit_status", ""))

    # -- operator questions ------------------------------------------------------------------
    async def _ask_operator(self, msg: Any) -> Any:
        prompt = msg.args[0] if msg.args else msg.kwargs.get("prompt", "confirm")
        kind = msg.kwargs.get("kind", "confirm")
        exp = self.current
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        question = Question(
            id=uuid4().hex[:8], experiment_id=exp.id if exp else "", prompt=str(prompt), kind=kind
        )
        with self._lock:
            self.question = question
            self._question_future = (loop, future)
        tag = _tag(self.id)
        await loop.run_in_executor(
            None,
            self._state_from_thread,
            exp.id,
            Paused(name=AWAITING_OPERATOR, message=f"{tag} asks the operator ({kind}): {prompt}"),
        )
        await loop.run_in_executor(None, self._announce_quietly)
        try:
            value = await future
        finally:
            with self._lock:
                self.question = None
                self._question_future = None
        await loop.run_in_executor(
            None,
            self._state_from_thread,
            exp.id,
            Running(message=f"{tag} the operator answered {value!r}"),
        )
        return value

    def _state_from_thread(self, run_id: str, state: State) -> None:
        try:
            self._set_state(run_id, state)
        except Exception as exc:
            log.warning("could not set state %s: %s", state.name, exc)

    def _announce_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self._announce()

    # -- control -----------------------------------------------------------------------------
    def _handle(self, message: dict[str, Any]) -> dict[str, Any]:
        cmd = message.get("cmd")
        if cmd in ("wake", "hold", "release"):
            self._candidates_stale = True
            if cmd != "wake":
                self._held_stale = True
            self._wake.set()
            return {"ok": True}
        if cmd == "status":
            return {"ok": True, **self._info()}
        exp_id = message.get("experiment")
        current = self.current
        if current is None:
            return {"ok": False, "error": f"worker {self.id} runs no experiment now"}
        if exp_id and exp_id != current.id:
            return {
                "ok": False,
                "error": f"experiment {exp_id} is not the one running (that is {current.id})",
            }
        if cmd == "answer":
            with self._lock:
                pending = self._question_future
            if pending is None:
                return {"ok": False, "error": f"experiment {current.id} asks no question now"}
            loop, future = pending
            value = message.get("value", True)
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(value))
            return {"ok": True}
        if cmd in ("pause", "resume", "stop", "abort", "cancel"):
            return self._interrupt(cmd, message)
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    def _interrupt(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        """Turn a control command into a RunEngine call (or hand it to the paused loop)."""
        with self._lock:
            if self.current is None:
                return {"ok": False, "error": "no experiment runs now"}
            if cmd == "cancel":
                self._cancel_reason = args.get("reason") or "cancelled"
            elif cmd == "abort" and self._cancel_reason is None:
                self._cancel_reason = args.get("reason") or "aborted by the operator"
            if cmd == "stop":
                self._stopped_early = True
            state = str(self.RE.state)
        if state in ("paused", "pausing"):
            if cmd == "pause":
                return {"ok": True, "note": "already paused"}
            self._commands.put((cmd, args))
            return {"ok": True}
        if state != "running":
            if cmd in ("abort", "cancel"):
                return {"ok": True, "note": "the plan had not started; it will not start"}
            return {"ok": False, "error": f"the RunEngine is {state}"}
        try:
            if cmd == "pause":
                self.RE.request_pause(defer=bool(args.get("defer", True)))
            elif cmd == "resume":
                return {"ok": False, "error": "the plan is not paused"}
            elif cmd == "stop":
                self.RE.stop()
            else:
                self.RE.abort(self._cancel_reason or "")
        except Exception as exc:  # the RunEngine changed state meanwhile: hand it over
            if str(self.RE.state) == "paused" and cmd != "pause":
                self._commands.put((cmd, args))
                return {"ok": True}
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"ok": True}


__all__ = ["DocumentCallback", "LabWorker"]
