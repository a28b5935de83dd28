"""The lab worker: one long-lived process per lab that runs the lab's experiments.

It keeps the lab's devices connected and one ``RunEngine`` alive across experiments (no process
per experiment), claims the lab's next flow run through Prefect's own state orchestration,
runs the plan, and records the outcome as Prefect states, labels, logs and an artifact. New
work and controls arrive over a zmq control channel (:mod:`remotelab.queue.control`); a short
poll of Prefect backs it up. :class:`LabWorker` composes the parts that do each job:

- :mod:`~remotelab.worker.claiming` — claiming the next experiment;
- :mod:`~remotelab.worker.running` — running it on the RunEngine, and interrupting it;
- :mod:`~remotelab.worker.outcome` and :mod:`~remotelab.worker.records` — its outcome,
  recorded in Prefect, and the lab left safe;
- :mod:`~remotelab.worker.questions` — the plan's questions to the operator;
- :mod:`~remotelab.worker.commands` — the control commands, in a table;
- :mod:`~remotelab.worker.presence` — the announcement, the heartbeat, the peers;
- :mod:`~remotelab.worker.recovery` — experiments of dead workers, stale edit holds.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID, uuid4

from bluesky import RunEngine
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import State

from remotelab.queue import control
from remotelab.queue.announcement import HEARTBEAT_INTERVAL
from remotelab.queue.commands import Abort, Cancel
from remotelab.queue.messages import worker_tag
from remotelab.queue.models import Experiment, Question
from remotelab.queue.prefect_lab import LabOnPrefect, PrefectLab
from remotelab.queue.service import PlanRegistryLike, default_registry
from remotelab.worker.claiming import Claimer
from remotelab.worker.commands import CommandTable
from remotelab.worker.operator import ASK_OPERATOR
from remotelab.worker.presence import Presence
from remotelab.worker.questions import Questions
from remotelab.worker.records import Recorder, make_safe
from remotelab.worker.recovery import StaleHolds, recover
from remotelab.worker.running import Runner

log = logging.getLogger("remotelab.worker")

DocumentCallback = Callable[[str, dict[str, Any]], Any]
#: on SIGTERM/SIGINT, how many times (a second apart) the worker asks the RunEngine to abort
SHUTDOWN_ABORT_TRIES = 30
#: a run held by an edit longer than this (s) is a stale hold (its editor died or lost Prefect):
#: a worker puts it back in the queue as it was before the edit
EDIT_GRACE = 60.0
#: how often (s) a worker looks for stale edit holds while it serves the lab
EDIT_CHECK_INTERVAL = 10.0


class LabWorker:
    """Runs one lab's experiments, one at a time, on one RunEngine.

    ``subscribers`` receive every ``(name, doc)`` the RunEngine emits (the run store and the
    document stream plug in here). ``registry`` defaults to the lab's plan registry;
    ``prefect`` to a :class:`~remotelab.queue.prefect_lab.PrefectLab` on ``api_url``.
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
    ):
        self.lab = lab
        self.name: str = lab.name
        self.id = (
            worker_id or f"{socket.gethostname().split('.')[0]}-{os.getpid()}-{uuid4().hex[:6]}"
        )
        self.tag = worker_tag(self.id)
        self.prefect: LabOnPrefect = prefect or PrefectLab(self.name, api_url)
        self.poll_interval = poll_interval
        self.grace = grace
        self.control_bind = control_bind
        self.control: control.ControlServer | None = None
        self.completed = 0
        self._registry = registry
        self.RE = RunEngine({}, context_managers=[], call_returns_result=True)
        for callback in subscribers:
            self.RE.subscribe(callback)

        def set_state(run_id: str, state: State) -> object:
            return self.prefect.set_state(run_id, state)

        self.runner = Runner(
            self.RE, lab, lambda: self.registry, set_state, worker_id=self.id, tag=self.tag
        )
        self.presence = Presence(self.prefect, self.id, self._describe)
        self.questions = Questions(
            lambda: self.current.id if self.current else "",
            set_state,
            self.presence.announce_quietly,
            self.tag,
        )
        self.RE.register_command(ASK_OPERATOR, self.questions.ask)
        self.claimer = Claimer(self.prefect, self.id, poll_interval)
        self.stale_holds = StaleHolds(self.prefect, edit_grace, edit_check_interval)
        self.recorder = Recorder(
            self.prefect, lab, worker_id=self.id, tag=self.tag, data_url=data_url
        )
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self.commands = CommandTable(
            self.id, self.claimer, self.runner, self.questions, self._describe, self._wake
        )

    # -- what it is doing ------------------------------------------------------------------
    @property
    def current(self) -> Experiment | None:
        """The experiment it runs now."""
        current = self.runner.current
        return current.exp if current is not None else None

    @property
    def question(self) -> Question | None:
        """The question the running plan asks the operator now."""
        return self.questions.question

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

    def _describe(self) -> dict[str, Any]:
        current, question = self.current, self.question
        return {
            "id": self.id,
            "lab": self.name,
            "control": self.control.endpoint if self.control else "",
            "current": current.id if current else None,
            "question": question.model_dump() if question else None,
            "re_state": str(self.RE.state),
        }

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> list[Experiment]:
        """Connect: create the lab's Prefect objects, open the control channel, announce this
        worker, mark experiments left running by dead workers Crashed and make the devices
        safe. Returns the experiments it marked crashed."""
        self.prefect.ensure()
        self.control = control.ControlServer(self.commands, self.control_bind).start()
        self.presence.announce(create=True)
        crashed = self.recover()
        self.restore_stale_edits()
        busy = [w for w in self.presence.peers() if w.current]
        if busy:  # another worker of this lab is mid-experiment: leave its devices alone
            log.info(
                "worker %s runs %s now: not resetting the devices", busy[0].id, busy[0].current
            )
        else:
            make_safe(self.lab, self.prefect, "worker start")
        self.recorder.start()
        for target, name in ((self._heartbeat_loop, "heartbeat"), (self._watch_loop, "watch")):
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
        self.recorder.close()
        for thread in self._threads:
            thread.join(5)
        if self.control is not None:
            self.control.close()
        try:
            self.presence.withdraw()
        except Exception as exc:
            log.warning("could not withdraw worker %s's announcement: %s", self.id, exc)
        self.prefect.close()

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
            threading.Thread(
                target=self._abort_on_shutdown,
                args=(reason,),
                name="remotelab-shutdown",
                daemon=True,
            ).start()

    def _abort_on_shutdown(self, reason: str) -> None:
        if self.grace > 0:
            deadline = time.monotonic() + self.grace
            while self.current is not None and time.monotonic() < deadline:
                time.sleep(0.05)
        # ask again until the experiment has ended: an abort that meets the RunEngine between
        # two states is refused, and must not leave the plan running
        abort = Abort(reason=f"aborted: the worker was stopped ({reason})")
        for _ in range(SHUTDOWN_ABORT_TRIES):
            if self.current is None:
                return
            reply = self.runner.interrupt(abort)
            if not reply.ok:
                log.warning("abort on %s: %s; trying again", reason, reply.error)
            for _ in range(20):  # up to 1 s for the experiment to end
                if self.current is None:
                    return
                time.sleep(0.05)

    # -- background: heartbeat, stale holds, cancels made in Prefect ---------------------------
    def _heartbeat_loop(self) -> None:
        while not self._stopping.wait(HEARTBEAT_INTERVAL):
            try:
                self.presence.beat()
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
            # here, not between experiments: a long experiment must not keep a hold waiting
            if self.stale_holds.check():
                self.claimer.invalidate()

    def _watch_loop(self) -> None:
        """Notice a cancel requested in Prefect itself (its UI or CLI set Cancelling)."""
        while not self._stopping.wait(self.poll_interval):
            current = self.runner.current
            if current is None or current.cancel_reason is not None:
                continue
            try:
                state = self.prefect.read_run(current.exp.id).state
            except Exception:
                continue
            cancelling = state is not None and state.type == StateType.CANCELLING
            if cancelling and state is not None and self.runner.current is current:
                self.runner.interrupt(Cancel(reason=state.message or "cancelled"))

    # -- the parts, as the worker uses them ---------------------------------------------------
    def peers(self) -> list[dict[str, Any]]:
        """The other live workers of this lab, as they announce themselves."""
        return [p.to_value() for p in self.presence.peers()]

    def recover(self) -> list[Experiment]:
        """Mark Crashed the lab's experiments still active whose worker is gone."""
        return recover(self.prefect, self.id)

    def restore_stale_edits(self) -> list[Experiment]:
        """Put back in the queue the lab's runs an edit has held too long (see
        :class:`~remotelab.worker.recovery.StaleHolds`); those restored."""
        restored = self.stale_holds.restore()
        if restored:
            self.claimer.invalidate()
        return restored

    def held(self) -> bool:
        """Whether the lab is held (re-read at most every poll interval, and at once after a
        wake-up or hold message)."""
        return self.claimer.held.get()

    def candidates(self) -> list[FlowRun]:
        """The next few queued flow runs of the lab, in the order they should run."""
        return self.claimer.candidates()

    def claim(self) -> FlowRun | None:
        """Claim the lab's next queued flow run, or None (held, stopping, nothing queued)."""
        if self._stopping.is_set():
            return None
        return self.claimer.claim()

    def run_next(self) -> Experiment | None:
        """Claim and run the next experiment; returns it when it has ended, or None."""
        run = self.claim()
        if run is None:
            return None
        return self.execute(run)

    def execute(self, run: FlowRun) -> Experiment:
        """Run a claimed (Running) flow run's plan on the RunEngine and record the outcome."""
        ended = self.runner.run(run)
        self.questions.clear()
        try:
            return self.recorder.finish(ended)
        finally:
            self.runner.done()
            self.completed += 1


__all__ = ["DocumentCallback", "LabWorker"]
