"""A lane: one RunEngine and what runs one experiment on it at a time.

A worker has as many lanes as its lab's ``concurrency``; each has its own RunEngine (so each
running experiment has its own documents, pause and resume), its :class:`Runner`, the
questions its plan asks (:class:`Questions`), and the holds of shared devices its plan takes
(:mod:`remotelab.plans.holds`, on the worker's one reservation book).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bluesky import RunEngine
from prefect.states import State

from remotelab.lab.reservations import Reservations
from remotelab.plans.holds import install_holds
from remotelab.queue.commands import Abort
from remotelab.queue.models import Experiment
from remotelab.worker.operator import ASK_OPERATOR
from remotelab.worker.questions import Questions
from remotelab.worker.running import Runner
from remotelab.worker.tasks import TaskThread

log = logging.getLogger("remotelab.worker")

#: on the worker's stop, how many times (a second apart) a lane asks its RunEngine to abort
SHUTDOWN_ABORT_TRIES = 30


@dataclass(frozen=True)
class Need:
    """What an experiment needs of the lab: devices (and samples) for the whole run, and the
    shared devices its plan holds in blocks."""

    reserved: frozenset[str] = frozenset()
    shared: frozenset[str] = frozenset()

    @property
    def devices(self) -> frozenset[str]:
        """The devices among the reserved resources (not the samples)."""
        return frozenset(r for r in self.reserved if not r.startswith("sample:"))


@dataclass
class Booking:
    """A lane's experiment's reservations: what it needs."""

    need: Need = field(default_factory=Need)


class Lane:
    """Lane ``index`` of a worker: a RunEngine, a runner and the plan's questions."""

    def __init__(
        self,
        index: int,
        lab: Any,
        registry: Callable[[], Any],
        set_state: Callable[[str, State], object],
        announce: Callable[[], None],
        book: Reservations,
        *,
        worker_id: str,
        tag: str,
    ):
        self.index = index
        self.RE = RunEngine({}, context_managers=[], call_returns_result=True)
        self.book = book
        self.runner = Runner(
            self.RE,
            lab,
            registry,
            set_state,
            worker_id=worker_id,
            tag=tag,
            allowed=self.allowed if lab.concurrency > 1 else None,
        )
        self.questions = Questions(self.experiment_id, set_state, announce, tag)
        self.RE.register_command(ASK_OPERATOR, self.questions.ask)
        install_holds(self.RE, book, self.experiment_id)
        self.booking = Booking()
        #: the lane's threads: its plans', and the one proposing Running as a plan starts
        self.runs = TaskThread(f"remotelab-lane-{index}")
        self.starts = TaskThread(f"remotelab-start-{index}")
        #: the lane's current (or last) execution on ``runs``
        self.task: Future[None] | None = None
        #: given an experiment to run (set before its task starts, cleared as it ends)
        self.taken = False
        self.last: Experiment | None = None

    def stop_threads(self) -> None:
        """Let the lane's threads end (after what they were given)."""
        self.runs.stop()
        self.starts.stop()

    def allowed(self) -> set[str]:
        """The devices this lane's plan may drive now: its reserved devices, and the shared
        devices it holds in a block."""
        return set(self.booking.need.devices) | self.book.held_by(self.experiment_id())

    def experiment_id(self) -> str:
        """The id of the experiment this lane runs, or ``""``."""
        current = self.runner.current
        return current.exp.id if current is not None else ""

    @property
    def busy(self) -> bool:
        """Whether an experiment runs (or is about to run) on this lane."""
        return self.taken or self.runner.current is not None

    def describe(self) -> dict[str, Any] | None:
        """What runs on this lane (for the worker's status), or None."""
        current = self.runner.current
        if current is None:
            return None
        question = self.questions.question
        started = datetime.now(UTC).timestamp() - current.elapsed()
        return {
            "id": current.exp.id,
            "plan": current.exp.plan,
            "submitter": current.exp.submitter,
            "devices": sorted(self.booking.need.devices | self.booking.need.shared),
            "shared": sorted(self.booking.need.shared),
            "re_state": str(self.RE.state),
            "question": question.model_dump() if question else None,
            "started": datetime.fromtimestamp(started, UTC).isoformat(),
            "lane": self.index,
        }

    def abort_until_ended(self, reason: str, grace: float = 0.0) -> None:
        """Let the experiment run ``grace`` s, then abort it, asking again until it has ended:
        an abort that meets the RunEngine between two states is refused, and must not leave
        the plan running (the worker's stop)."""
        if grace > 0:
            deadline = time.monotonic() + grace
            while self.busy and time.monotonic() < deadline:
                time.sleep(0.05)
        abort = Abort(reason=f"aborted: the worker was stopped ({reason})")
        for _ in range(SHUTDOWN_ABORT_TRIES):
            if not self.busy:
                return
            reply = self.runner.interrupt(abort)
            if not reply.ok:
                log.warning("abort on %s: %s; trying again", reason, reply.error)
            for _ in range(20):  # up to 1 s for the experiment to end
                if not self.busy:
                    return
                time.sleep(0.05)


__all__ = ["SHUTDOWN_ABORT_TRIES", "Booking", "Lane", "Need"]
