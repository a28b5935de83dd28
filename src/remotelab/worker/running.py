"""Running one experiment on the worker's RunEngine, and interrupting it.

:class:`Runner` validates a claimed run's submission, builds its plan and runs it; it tracks
the experiment's bluesky runs (start uids, stop exit statuses) from the RunEngine's documents;
it turns pause, resume, stop, abort and cancel commands into RunEngine calls, and serves them
itself while the plan is paused (the RunEngine returns control to the caller then).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted
from prefect.client.schemas.objects import FlowRun
from prefect.states import Paused, Running, State

from remotelab.plans.holds import guard
from remotelab.queue.commands import Abort, Cancel, Interrupt, Pause, Reply, Resume, Stop
from remotelab.queue.messages import PAUSED_NAME
from remotelab.queue.models import Experiment

log = logging.getLogger("remotelab.worker")

ENDING = frozenset({"aborting", "stopping", "halting"})
#: an immediate pause: how long (s) the answer waits for the RunEngine to be paused
PAUSE_SETTLE = 2.0
#: a pending pause called off: how long (s) to watch for a checkpoint that had taken it already
CHECKPOINT_GRACE = 1.0
"""RunEngine states in which a plan is already on its way out."""


@dataclass
class Current:
    """The experiment a worker runs, and what has happened to it so far."""

    exp: Experiment
    params: dict[str, Any]
    role: str
    cancel_reason: str | None = None
    stopped_early: bool = False
    uids: list[str] = field(default_factory=list)
    exit_statuses: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        """Seconds since it started."""
        return time.monotonic() - self.started


@dataclass(frozen=True)
class Ended:
    """An experiment whose plan has ended: what happened, and the error outside its runs."""

    current: Current
    error: BaseException | None
    traceback: str
    duration: float


def unless_cancelled(current: Current, plan: Any) -> Any:
    """``plan``, unless ``current`` was cancelled before its first step: a cancel that found
    the RunEngine not running yet (it said "will not start") is seen here, once the RunEngine
    runs — a later one reaches the RunEngine itself."""
    if current.cancel_reason is not None:
        return None
    return (yield from plan)


class Runner:
    """Runs experiments one at a time on ``RE``; ``set_state(run_id, state)`` records the
    plan's pauses and resumptions; ``tag`` starts those state messages. With ``allowed``, a
    plan may drive only the devices ``allowed()`` names (the rest raise
    :class:`~remotelab.errors.DeviceNotReservedError`)."""

    def __init__(
        self,
        RE: RunEngine,
        lab: Any,
        registry: Callable[[], Any],
        set_state: Callable[[str, State], object],
        *,
        worker_id: str,
        tag: str,
        allowed: Callable[[], set[str]] | None = None,
    ):
        self.RE = RE
        self._allowed = allowed
        self.lab = lab
        self._registry = registry
        self._set_state = set_state
        self.worker_id = worker_id
        self.tag = tag
        self.lock = threading.RLock()
        self.current: Current | None = None
        self._commands: queue.Queue[Interrupt] = queue.Queue()
        RE.subscribe(self._on_document)

    # -- running -----------------------------------------------------------------------------
    def run(self, run: FlowRun) -> Ended:
        """Run a claimed (Running) flow run's plan to its end."""
        params = run.parameters or {}
        current = Current(
            exp=Experiment.from_flow_run(run),
            params=dict(params.get("params") or {}),
            role=str(params.get("role") or "researcher"),
        )
        with self.lock:
            self.current = current
        while not self._commands.empty():
            self._commands.get_nowait()
        error: BaseException | None = None
        tb = ""
        try:
            plan = self._build(current)
            if current.cancel_reason is None:
                self._run_plan(unless_cancelled(current, plan))
        except Exception as exc:
            error, tb = exc, traceback.format_exc()
        return Ended(current, error, tb, time.monotonic() - current.started)

    def done(self) -> None:
        """The experiment is recorded: the worker runs none now."""
        with self.lock:
            self.current = None

    def _build(self, current: Current) -> Any:
        exp = current.exp
        registry = self._registry()
        validated = registry.validate(exp.plan, current.params, lab=self.lab, role=current.role)
        md: dict[str, Any] = {
            "experiment_id": exp.id,
            "submitter": exp.submitter,
            "role": current.role,  # the signed one (remotelab.queue.signatures)
            "lab": self.lab.name,
            "priority": exp.priority.value,
            "worker": self.worker_id,
        }
        if exp.edits:
            md["edits"] = exp.edits
        if exp.audit_head:
            md["audit_head"] = exp.audit_head
        plan = registry.build(validated, self.lab, md=md)
        if self._allowed is not None:  # several plans share the lab: each drives only its own
            plan = guard(plan, self._allowed, self.lab, exp.id)
        return plan

    def _run_plan(self, plan: Any) -> None:
        try:
            self.RE(plan)
        except RunEngineInterrupted:
            self._while_paused()

    def _while_paused(self) -> None:
        """The RunEngine stopped on an interruption: serve resume / stop / abort commands."""
        announced = False
        while True:
            current = self.current
            state = str(self.RE.state)
            if state == "idle" or current is None:
                return  # aborted or stopped from the control thread
            if state == "paused" and not announced:
                self._set_state(
                    current.exp.id,
                    Paused(
                        name=PAUSED_NAME,
                        message=f"{self.tag} plan paused at a checkpoint; resume, stop or abort it",
                    ),
                )
                announced = True
            try:
                command = self._commands.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(command, Resume):
                self._set_state(current.exp.id, Running(message=f"{self.tag} resumed"))
                announced = False
                try:
                    self.RE.resume()
                    return
                except RunEngineInterrupted:
                    continue
            if isinstance(command, Stop):
                self._set_state(current.exp.id, Running(message=f"{self.tag} stopping"))
                self.RE.stop()
                return
            if isinstance(command, Abort | Cancel):
                self.RE.abort(command.reason)
                return

    def _on_document(self, name: str, doc: dict[str, Any]) -> None:
        with self.lock:
            current = self.current
            if current is None:
                return
            if name == "start":
                current.uids.append(doc["uid"])
            elif name == "stop":
                current.exit_statuses.append(doc.get("exit_status", ""))

    # -- interrupting ------------------------------------------------------------------------
    def interrupt(self, command: Interrupt) -> Reply:
        """Turn a control command into a RunEngine call (or hand it to the paused loop)."""
        with self.lock:
            current = self.current
            if current is None:
                return Reply.refused("no experiment runs now")
            if isinstance(command, Cancel):
                current.cancel_reason = command.reason or "cancelled"
            elif isinstance(command, Abort) and current.cancel_reason is None:
                current.cancel_reason = command.reason or "aborted by the operator"
            if isinstance(command, Stop):
                current.stopped_early = True
            state = str(self.RE.state)
        if state in ("paused", "pausing"):
            if isinstance(command, Pause):
                return Reply(ok=True, note="already paused", info={"state": "paused"})
            self._commands.put(command)
            return Reply.done()
        if state != "running":
            return self._not_running(command, state)
        try:
            if isinstance(command, Pause):
                self.RE.request_pause(defer=command.defer)
                return self._pause_answer(command)
            elif isinstance(command, Resume):
                return self._call_off_pause(command)
            elif isinstance(command, Stop):
                self.RE.stop()
            else:
                self.RE.abort(current.cancel_reason or "")
        except Exception as exc:  # the RunEngine changed state meanwhile
            now = str(self.RE.state)
            if now == "paused" and not isinstance(command, Pause):
                self._commands.put(command)  # hand it to the paused loop
                return Reply.done()
            if now != "running" and isinstance(command, Abort | Cancel | Stop):
                return self._not_running(command, now)  # e.g. a cancel seen in Prefect too
            return Reply.refused(f"{type(exc).__name__}: {exc}")
        return Reply.done()

    def _pause_answer(self, command: Pause) -> Reply:
        """What a pause did: the plan is paused, or the pause waits for its next checkpoint
        (``info["state"]``: ``paused``, ``pausing`` or ``pause pending``)."""
        if command.defer:
            note = "pause requested: pending until the plan's next checkpoint"
            return Reply(ok=True, note=note, info={"state": "pause pending"})
        deadline = time.monotonic() + PAUSE_SETTLE
        while str(self.RE.state) == "pausing" and time.monotonic() < deadline:
            time.sleep(0.01)  # the RunEngine's own thread finishes the pause
        state = str(self.RE.state)
        if state == "paused":
            return Reply(ok=True, note="paused", info={"state": "paused"})
        return Reply(
            ok=True, note=f"pause requested; the RunEngine is {state}", info={"state": state}
        )

    def _call_off_pause(self, command: Resume) -> Reply:
        """A resume while a deferred pause is pending calls the pause off. A checkpoint that
        had already taken the pause (bluesky waits half a second there before pausing) is
        resumed as soon as it pauses."""
        if not self.RE.deferred_pause_requested:
            return Reply.refused("the plan is not paused")
        self.RE._deferred_pause_requested = False  # bluesky has no call to withdraw it
        deadline = time.monotonic() + CHECKPOINT_GRACE
        while time.monotonic() < deadline:
            if str(self.RE.state) in ("pausing", "paused"):
                self._commands.put(command)  # the paused loop resumes it
                note = "the plan paused at its checkpoint as the resume came; resumed"
                return Reply(ok=True, note=note, info={"state": "running"})
            time.sleep(0.01)
        return Reply(ok=True, note="the pending pause was called off", info={"state": "running"})

    @staticmethod
    def _not_running(command: Interrupt, state: str) -> Reply:
        """The answer to ``command`` while the RunEngine is ``state`` (not running or paused).

        A second abort, cancel or stop of a plan already ending is done, not an error: a
        cancel reaches the worker both over the control channel and from Prefect's state.
        """
        if isinstance(command, Abort | Cancel | Stop) and state in ENDING:
            return Reply.done(f"the plan is already {state}")
        if isinstance(command, Abort | Cancel):
            return Reply.done("the plan had not started; it will not start")
        return Reply.refused(f"the RunEngine is {state}")


__all__ = ["Current", "Ended", "Runner"]
