"""The lab worker: one long-lived process per lab that runs the lab's experiments.

It keeps the lab's devices connected and its RunEngines alive across experiments (no process
per experiment): one per lane, as many lanes as the lab's ``concurrency``. Its dispatcher
reserves the devices of the next queued experiment that can start, claims its flow run through
Prefect's own state orchestration, runs the plan on a free lane, and records the outcome as
Prefect states, labels, logs and an artifact. New
work and controls arrive over a zmq control channel (:mod:`remotelab.queue.control`); a short
poll of Prefect backs it up. :class:`LabWorker` composes the parts that do each job:

- :mod:`~remotelab.worker.dispatch` — which experiment starts next, its devices reserved;
- :mod:`~remotelab.worker.claiming` — claiming it;
- :mod:`~remotelab.worker.lanes` and :mod:`~remotelab.worker.running` — running it on a
  lane's RunEngine, and interrupting it;
- :mod:`~remotelab.worker.outcome` and :mod:`~remotelab.worker.records` — its outcome,
  recorded in Prefect, and the lab left safe;
- :mod:`~remotelab.worker.questions` — the plan's questions to the operator;
- :mod:`~remotelab.worker.commands` — the control commands, in a table;
- :mod:`~remotelab.worker.presence` — the announcement, the heartbeat, the peers;
- :mod:`~remotelab.worker.recovery` — experiments of dead workers, stale edit holds;
- :mod:`~remotelab.queue.lost` — peers whose heartbeat stopped, marked lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from pathlib import Path
from typing import Any, cast
from uuid import UUID, uuid4

from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import State

from remotelab.keys.curve import worker_key_name
from remotelab.keys.signing import Verifier, load_verifier
from remotelab.lab.reservations import Reservations
from remotelab.notify import Notifier, attach
from remotelab.plans.engine import close_engine
from remotelab.queue import control
from remotelab.queue.announcement import HEARTBEAT_INTERVAL
from remotelab.queue.commands import Cancel
from remotelab.queue.lost import LostWorkers, OnLost, RunUids, notifying
from remotelab.queue.messages import is_lost_message, worker_tag
from remotelab.queue.models import Experiment
from remotelab.queue.prefect_lab import LabOnPrefect, PrefectLab
from remotelab.queue.service import PlanRegistryLike, default_registry
from remotelab.queue.subscriptions import lab_notifier
from remotelab.settings import get_settings, worker_lost_after
from remotelab.worker.alerts import Alerts
from remotelab.worker.claiming import Claimer
from remotelab.worker.commands import CommandTable, watch_prefect_cancels
from remotelab.worker.dispatch import DeviceLeases, Dispatcher
from remotelab.worker.faults import FaultGuard
from remotelab.worker.lanes import Booking, Lane
from remotelab.worker.link import Link, Watched
from remotelab.worker.notices import Notices
from remotelab.worker.presence import Presence
from remotelab.worker.records import Recorder, make_safe
from remotelab.worker.recovery import StaleHolds, forget_dead_workers, recover
from remotelab.worker.views import LaneViews
from remotelab.worker.watchdogs import Watchdogs

log = logging.getLogger("remotelab.worker")

DocumentCallback = Callable[[str, dict[str, Any]], Any]
#: a run held by an edit longer than this (s) is a stale hold (its editor died or lost Prefect):
#: a worker puts it back in the queue as it was before the edit
EDIT_GRACE = 60.0
#: how often (s) a worker looks for stale edit holds while it serves the lab
EDIT_CHECK_INTERVAL = 10.0


class LabWorker(LaneViews):
    """Runs one lab's experiments, up to the lab's ``concurrency`` at once, one RunEngine each.

    ``subscribers`` receive every ``(name, doc)`` the RunEngines emit (the run store and the
    document stream plug in here). ``registry`` defaults to the lab's plan registry;
    ``prefect`` to a :class:`~remotelab.queue.prefect_lab.PrefectLab` on ``api_url``;
    ``notifier`` (:mod:`remotelab.notify`) to the lab's, its file's targets and its users'
    subscriptions (:func:`~remotelab.queue.subscriptions.lab_notifier`). ``verifier`` holds
    the submission keys it trusts (default: the keys directory's): it runs only what the
    gateway signed (:mod:`remotelab.queue.signatures`).
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
        prefect: LabOnPrefect | None = None,
        outbox: str | Path | None = None,
        store_path: str | Path | None = None,
        lost_after: float | None = None,
        on_lost: OnLost | None = None,
        run_uids: RunUids | None = None,
        notifier: Notifier | None = None,
        verifier: Verifier | None = None,
    ):
        self.lab = lab
        self.name: str = lab.name
        self.id = (
            worker_id or f"{socket.gethostname().split('.')[0]}-{os.getpid()}-{uuid4().hex[:6]}"
        )
        self.tag = worker_tag(self.id)
        self.alerts = Alerts()
        #: whether Prefect answers: every call through ``self.prefect`` says so
        self.link = Link("Prefect", self.alerts, cap=get_settings().retry_cap)
        unwatched = prefect or PrefectLab(self.name, api_url)
        self.prefect: LabOnPrefect = cast(LabOnPrefect, Watched(unwatched, self.link))
        self.poll_interval = poll_interval
        self.grace = grace
        self.control_bind = control_bind
        self.control: control.ControlServer | None = None
        self.completed = 0
        self._registry = registry
        # its reads of the subscriptions are not the worker's link to Prefect: not watched
        self.notifier = notifier or lab_notifier(lab, unwatched)
        attach(lab, self.notifier)  # for the parts that get only the lab
        self.notices = Notices(self.notifier, self.name, self.id, lambda: self.running)
        self.alerts.on_raise.append(self.notices.alert)  # held by a fault, watchdogs

        def set_state(run_id: str, state: State) -> object:
            started = self._starting.get(run_id)
            if started is not None:  # after the Running its claim proposes, never before
                wait([started])
            try:
                return self.prefect.set_state(run_id, state)
            except Exception as exc:  # a pause or a question not shown: the plan runs on
                log.warning("experiment %s: could not record %s: %s", run_id, state.name, exc)
                return None

        self.presence = Presence(self.prefect, self.id, self._describe)
        self.book = Reservations()
        self.lanes = [
            Lane(
                index,
                lab,
                lambda: self.registry,
                set_state,
                self.presence.announce_quietly,
                self.book,
                worker_id=self.id,
                tag=self.tag,
            )
            for index in range(max(1, int(getattr(lab, "concurrency", 1))))
        ]
        for lane in self.lanes:
            lane.RE.subscribe(lambda _n, _d: self.presence.announce_soon(), "start")  # its uid
            self.notices.watch(lane)
            for callback in subscribers:
                lane.RE.subscribe(callback)
        self.claimer = Claimer(self.prefect, self.id, poll_interval, verifier or load_verifier())
        self.leases = DeviceLeases(
            self.prefect.device_slots(),
            lambda: str(self.prefect.deployment_id),
            alone=lambda: not self.presence.peers(),
        )
        self.dispatcher = Dispatcher(
            lab, lambda: self.registry, self.claimer, self.book, self.leases
        )
        self.stale_holds = StaleHolds(self.prefect, edit_grace, edit_check_interval)
        #: peers whose heartbeat stopped for ``lost_after`` s (default: the setting) are lost
        self.lost_workers = LostWorkers(
            self.prefect,
            f"worker {self.id}",
            lost_after=lost_after or worker_lost_after(),
            own_id=self.id,
            run_uids=run_uids,
            on_lost=on_lost or notifying(self.notifier),
            interval=HEARTBEAT_INTERVAL,
        )
        self.recorder = Recorder(
            self.prefect,
            lab,
            worker_id=self.id,
            tag=self.tag,
            link=self.link,
            data_url=data_url,
            outbox_path=outbox,
        )
        self.faults = FaultGuard.for_lab(
            lab, self.prefect, self.claimer, self.recorder.outbox, self.alerts, store_path
        )
        self.recorder.on_unsafe.append(self.faults.hold)
        self.watchdogs = Watchdogs.for_worker(self)
        # a claim Prefect was lost in the middle of is undone once it is back
        self.recorder.outbox.handlers["unclaim"] = lambda p: self.claimer.let_go(p["run"])
        self.dispatcher.on_claim_lost = lambda run: self.recorder.outbox.put(
            str(run.id), "unclaim", {"run": str(run.id)}
        )
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._bookings: dict[str, Booking] = {}  # claimed by claim(), not yet executed
        #: run id → the task moving it from Pending to Running as its plan starts
        self._starting: dict[str, Future[None]] = {}
        self._lanes_lock = threading.Lock()
        self.book.on_release.append(lambda _freed: self._wake.set())
        self.commands = CommandTable(
            self.id, self.claimer, self._running, self._describe, self._wake
        )

    @property
    def registry(self) -> PlanRegistryLike:
        if self._registry is None:
            self._registry = default_registry(self.lab)
        return self._registry

    @property
    def client(self) -> Any:
        """This thread's Prefect client (of a :class:`~remotelab.queue.prefect_lab.PrefectLab`)."""
        return getattr(self.prefect, "client", None)

    @property
    def deployment_id(self) -> UUID:
        return self.prefect.deployment_id

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> list[Experiment]:
        """Connect: create the lab's Prefect objects, open the control channel, announce this
        worker, mark experiments left running by dead workers Crashed and make the devices
        safe. Returns the experiments it marked crashed."""
        self.prefect.ensure()
        self.control = control.ControlServer(
            self.commands, self.control_bind, name=worker_key_name(self.name)
        ).start()
        self.recorder.outbox.adopt()  # what ended workers of this host left to tell
        crashed = self.link.until_reached(self._take_over, self._stopping)
        self.recorder.start()
        for target, name in ((self._heartbeat_loop, "heartbeat"), (self._watch_loop, "watch")):
            thread = threading.Thread(target=target, name=f"remotelab-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("worker %s serves lab %s on %s", self.id, self.name, self.control.endpoint)
        return crashed

    def _take_over(self) -> list[Experiment]:
        """Announce this worker; deliver the outbox, then mark crashed what dead workers left
        running, and leave the devices safe (unless a peer runs an experiment)."""
        self.presence.arrive()
        if not self.recorder.outbox.flush(timeout=30.0):  # ended, not crashed: say so first
            raise ConnectionError("Prefect unreachable: the outbox could not be delivered")
        crashed = self.recover()
        self.restore_stale_edits()
        peers = self.presence.peers()
        busy = [w for w in peers if w.current or w.running]
        if busy:  # another worker of this lab is mid-experiment: leave its devices alone
            log.info(
                "worker %s runs %s now: not resetting the devices", busy[0].id, busy[0].current
            )
        else:
            make_safe(self.lab, self.prefect, "worker start")
        if not peers:  # alone on the lab: no slot in Prefect is anyone's any more
            try:
                self.leases.slots.reset(self.lab.devices)
            except Exception as exc:  # the leases of the dead expire by themselves
                log.warning("could not free the lab's device slots in Prefect: %s", exc)
        return crashed

    def close(self) -> None:
        """Stop serving: close the control channel and withdraw the announcement."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._stopping.set()
        self._wake.set()
        self.recorder.close()
        for lane in self.lanes:
            lane.stop_threads()
        for thread in self._threads:
            thread.join(5)
        for lane in self.lanes:
            close_engine(lane.RE)  # its event loop and that loop's thread
        if self.control is not None:
            self.control.close()
        try:
            self.presence.withdraw()
        except Exception as exc:
            log.warning("could not withdraw worker %s's announcement: %s", self.id, exc)
        self.notifier.close()
        self.prefect.close()

    def __enter__(self) -> LabWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_forever(self) -> None:
        """Serve the lab until SIGTERM/SIGINT (or :meth:`shutdown`): start experiments on free
        lanes as their devices come free; on stopping, wait for the running ones to end."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda signum, _f: self.shutdown(signal.Signals(signum).name))
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                started = self.start_next()
            except Exception as exc:  # never dies of it: tries again after a back-off
                self._wake.wait(self._retry_after(exc))
                continue
            if started is None and not self._stopping.is_set():
                self._wake.wait(self.poll_interval)
        wait([lane.task for lane in self.lanes if lane.task is not None])

    def _retry_after(self, exc: Exception) -> float:
        """How long to wait after the next experiment could not be started because of
        ``exc``: the link's back-off if Prefect was not reached, else a poll interval."""
        self.claimer.invalidate(held=True)
        if self.link.reachable:
            log.error("could not start the next experiment: %s: %s", type(exc).__name__, exc)
            return self.poll_interval
        return max(self.link.retry_in, self.poll_interval)

    def shutdown(self, reason: str = "shutdown") -> None:
        """Start no more experiments; abort the running ones (after ``grace`` seconds)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._wake.set()
        for lane in self.lanes:
            if lane.busy:
                threading.Thread(
                    target=lane.abort_until_ended,
                    args=(reason, self.grace),
                    name=f"remotelab-shutdown-{lane.index}",
                    daemon=True,
                ).start()

    # -- background: heartbeat, stale holds, cancels made in Prefect ---------------------------
    def _heartbeat_loop(self) -> None:
        while not self._stopping.wait(HEARTBEAT_INTERVAL):
            try:
                self.presence.beat()
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
            self.leases.renew()
            self.lost_workers.check_quietly()
            # here, not between experiments: a long experiment must not keep a hold waiting
            if self.stale_holds.check():
                self.claimer.invalidate()
            self.faults.check()
            self.watchdogs.check()

    def _watch_loop(self) -> None:
        watch_prefect_cancels(self.lanes, self.prefect, self.poll_interval, self._stopping)

    # -- the parts, as the worker uses them ---------------------------------------------------
    def recover(self) -> list[Experiment]:
        """Mark Crashed the lab's experiments still active whose worker is gone, and give
        back the device leases of the lab's dead workers."""
        lost = self.lost_workers
        crashed = recover(self.prefect, self.id, run_uids=lost.run_uids, on_lost=lost.on_lost)
        # those marked lost were told of by on_lost, with their worker
        self.notices.crashed([e for e in crashed if not is_lost_message(e.message)])
        forget_dead_workers(self.prefect, self.id)
        return crashed

    def restore_stale_edits(self) -> list[Experiment]:
        """Put back in the queue the lab's runs an edit has held too long (see
        :class:`~remotelab.worker.recovery.StaleHolds`); those restored."""
        restored = self.stale_holds.restore()
        if restored:
            self.claimer.invalidate()
        return restored

    def free_lane(self) -> Lane | None:
        """A lane that runs nothing now."""
        with self._lanes_lock:
            return next((lane for lane in self.lanes if not lane.busy), None)

    def claim(self, *, start: bool = True) -> FlowRun | None:
        """Reserve the devices of, and claim, the lab's next queued flow run that can start
        now, or None (held, stopping, nothing queued that can start, no free lane).
        ``start=False`` leaves it Pending (ours), for :meth:`start_next`."""
        if self._stopping.is_set():
            return None
        picked = self.dispatcher.next(lanes_free=self.free_lane() is not None, start=start)
        if picked is None:
            return None
        run, booking = picked
        self._bookings[str(run.id)] = booking
        return run

    def start_next(self) -> FlowRun | None:
        """Claim the next experiment that can start and start it on a free lane (not waiting
        for its end); the run started, or None."""
        run = self.claim(start=False)
        if run is None:
            return None
        lane = self.free_lane()
        if lane is None:  # pragma: no cover - claim() found a free lane, only this thread takes one
            raise RuntimeError("no free lane for a claimed experiment")
        # Running is proposed while the plan starts: its devices are reserved and the run is
        # ours (Pending), so nothing else can take either
        self._starting[str(run.id)] = lane.starts.submit(self._start_run, run)
        lane.booking = self._bookings.pop(str(run.id))
        lane.taken = True
        lane.task = lane.runs.submit(self._execute_quietly, run, lane)
        self.presence.announce_soon()  # its leases too, for whoever finds this worker dead
        return run

    def _start_run(self, run: FlowRun) -> None:
        """Move a claimed run to Running; if it was cancelled meanwhile, cancel its plan (its
        lane records it Cancelled once the plan has stopped and its devices are safe)."""
        try:
            started = self.claimer.start(run.id, settle=False)
        except Exception as exc:
            log.warning("could not mark experiment %s running: %s", run.id, exc)
            return
        if started:
            return
        reason = "cancelled before it started"
        with contextlib.suppress(Exception):
            state = self.prefect.read_run(run.id).state
            if state is not None and state.type == StateType.CANCELLING and state.message:
                reason = state.message
        cancel = Cancel(reason=reason)
        deadline = time.monotonic() + 10.0  # its lane is about to take it in hand
        while time.monotonic() < deadline:
            lane = next((x for x in self.lanes if x.experiment_id() == str(run.id)), None)
            if lane is not None:
                lane.runner.interrupt(cancel)
                return
            time.sleep(0.005)

    def run_next(self) -> Experiment | None:
        """Claim and run the next experiment; returns it when it has ended, or None."""
        run = self.claim()
        if run is None:
            return None
        return self.execute(run)

    def _execute_quietly(self, run: FlowRun, lane: Lane) -> None:
        try:
            self.execute(run, lane)
        except Exception:
            log.exception("experiment %s: the worker could not record its end", run.id)
        finally:
            self._wake.set()

    def execute(self, run: FlowRun, lane: Lane | None = None) -> Experiment:
        """Run a claimed (Running) flow run's plan on a lane's RunEngine (default: a free
        one) and record the outcome; its reservations are freed when it is recorded."""
        if lane is None:
            lane = self.free_lane() or self.lanes[0]
            lane.booking = self._bookings.pop(str(run.id), Booking())
        exp_id = str(run.id)
        ended = lane.runner.run(run)
        lane.questions.clear()
        starting = self._starting.pop(exp_id, None)
        try:
            own = None
            if len(self.lanes) > 1:  # the others' devices stay as they are
                need = lane.booking.need
                held = {d for d in need.shared if self.book.holder_of(d) in (None, exp_id)}
                own = need.devices | held
            started = None if starting is None else (lambda: wait([starting]))
            lane.last = self.recorder.finish(ended, own, started=started)
            self.faults.after(lane.last, ended.error)
            self.notices.ended(lane.last)
            return lane.last
        finally:
            lane.runner.done()
            lane.booking = Booking()
            lane.taken = False
            self.completed += 1
            self.dispatcher.release(exp_id)  # wakes the dispatcher: the lane is free already
            self.presence.announce_soon()


__all__ = ["DocumentCallback", "LabWorker"]
