"""Watchdogs: what does not fail but does not progress either, noticed and raised as alerts.

On the worker's heartbeat, :class:`Watchdogs` looks at

- each running experiment: a step far past its expected time — nothing emitted for
  ``stall_factor`` times its usual gap between documents (and at least :data:`STALL_FLOOR`
  s) — names the message the plan waits on (a device that stopped answering shows as a ``set``
  or ``trigger`` of that device that never finished);
- each operator question unanswered for longer than ``question_timeout`` s;
- the queue: experiments queued, the lab idle and not held, and none started for
  ``queue_stall`` s.

Each raises an alert (:mod:`remotelab.worker.alerts`: the worker's status, the dashboard,
``remotelab lab``, notifications) that closes by itself once the thing moves again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from remotelab.worker.alerts import Alerts
from remotelab.worker.lanes import Lane

#: a step is never called stalled before this many seconds without a document
STALL_FLOOR = 60.0
#: the messages a plan waits on a device in
DEVICE_MESSAGES = ("set", "trigger", "read", "locate", "kickoff", "complete", "stage", "unstage")


@dataclass
class LaneWatch:
    """What one lane's plan did last: the time of its last document, the usual gap between
    documents, the last message the RunEngine took."""

    experiment: str = ""
    last_doc: float = 0.0
    gap: float | None = None  # a running mean of the gaps between documents
    last_msg: str = ""  # the last message, or the device message a ``wait`` waits on
    command: str = ""  # the last message's command
    asked: dict[str, float] = field(default_factory=dict)  # question id → first seen

    def document(self, now: float) -> None:
        seen = now - self.last_doc
        self.gap = seen if self.gap is None else 0.8 * self.gap + 0.2 * seen
        self.last_doc = now


class Watchdogs:
    """The watchdogs of one worker's lanes; ``held()`` says whether the lab is held,
    ``queued()`` which experiments the worker sees queued, ``why()`` why those it could not
    start wait (the dispatcher's view)."""

    def __init__(
        self,
        lanes: list[Lane],
        alerts: Alerts,
        *,
        held: Callable[[], bool],
        queued: Callable[[], list[str]],
        why: Callable[[], dict[str, str]],
        stall_factor: float = 3.0,
        question_timeout: float = 1800.0,
        queue_stall: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.lanes = lanes
        self.alerts = alerts
        self._held = held
        self._queued = queued
        self._why = why
        self.stall_factor = stall_factor
        self.question_timeout = question_timeout
        self.queue_stall = queue_stall
        self.clock = clock
        self._lock = threading.Lock()
        self.watches = {lane.index: LaneWatch(last_doc=clock()) for lane in lanes}
        self.last_start = clock()
        for lane in lanes:
            lane.RE.subscribe(self._on_document(lane))
            lane.RE.msg_hook = self._on_message(lane, lane.RE.msg_hook)  # type: ignore[assignment]

    @classmethod
    def for_worker(cls, worker: Any, **kw: Any) -> Watchdogs:
        """The watchdogs of a :class:`~remotelab.worker.LabWorker`, as its lab file (the
        ``unattended`` section) sets them."""
        spec = getattr(getattr(worker.lab, "spec", None), "unattended", None)
        if spec is not None:
            kw.setdefault("stall_factor", spec.stall_factor)
            kw.setdefault("question_timeout", spec.question_timeout_s)
            kw.setdefault("queue_stall", spec.queue_stall_s)
        return cls(
            worker.lanes,
            worker.alerts,
            held=worker.claimer.is_held,
            queued=lambda: [str(r.id) for r in worker.claimer.queue.value],
            why=lambda: worker.dispatcher.waiting,
            **kw,
        )

    def _on_document(self, lane: Lane) -> Callable[[str, dict[str, Any]], None]:
        def seen(name: str, doc: dict[str, Any]) -> None:
            with self._lock:
                watch = self.watches[lane.index]
                if name == "start":
                    self.last_start = self.clock()
                    if watch.experiment != lane.experiment_id():
                        watch = LaneWatch(lane.experiment_id(), last_doc=self.clock())
                        self.watches[lane.index] = watch
                watch.document(self.clock())

        return seen

    def _on_message(self, lane: Lane, before: Any = None) -> Callable[[Any], None]:
        def took(msg: Any) -> None:
            if before is not None:  # a hook set before this one is called too
                before(msg)
            watch = self.watches[lane.index]
            watch.command = str(msg.command)
            obj = getattr(getattr(msg, "obj", None), "name", None)
            if obj and watch.command in DEVICE_MESSAGES:
                watch.last_msg = f"{watch.command} of {obj}"
            elif watch.command != "wait":
                watch.last_msg = watch.command

        return took

    # -- on the heartbeat ------------------------------------------------------------------
    def check(self) -> None:
        """Raise or close each watchdog's alert."""
        now = self.clock()
        for lane in self.lanes:
            self._check_lane(lane, now)
        self._check_queue(now)

    def _check_lane(self, lane: Lane, now: float) -> None:
        key = f"stall:lane{lane.index}"
        current = lane.runner.current
        if current is None or str(lane.RE.state) != "running":
            self.alerts.clear(key)
            self._check_questions(lane, now, asked={})
            return
        with self._lock:
            watch = self.watches[lane.index]
            if watch.experiment != current.exp.id:  # started, no document yet
                watch = LaneWatch(current.exp.id, last_doc=now)
                self.watches[lane.index] = watch
        silent = now - watch.last_doc
        limit = max(STALL_FLOOR, self.stall_factor * (watch.gap or 0.0))
        if silent < limit or watch.command == "sleep":  # a plan that sleeps means to
            self.alerts.clear(key)
        else:
            usual = f"; its steps took {watch.gap:.1f} s" if watch.gap else ""
            at = f", waiting on {watch.last_msg}" if watch.last_msg else ""
            device = " (a device that stopped answering?)" if _on_device(watch.last_msg) else ""

            self.alerts.raise_(
                key,
                "stalled",
                f"experiment {current.exp.id} ({current.exp.plan}) has made no progress for "
                f"{silent:.0f} s{at}{usual}{device}",
                experiment=current.exp.id,
            )
        self._check_questions(lane, now, asked=watch.asked)

    def _check_questions(self, lane: Lane, now: float, asked: dict[str, float]) -> None:
        key = f"question:lane{lane.index}"
        question = lane.questions.question
        if question is None:
            asked.clear()
            self.alerts.clear(key)
            return
        since = asked.setdefault(question.id, now)
        if now - since < self.question_timeout:
            return
        self.alerts.raise_(
            key,
            "question unanswered",
            f"experiment {question.experiment_id} has waited {(now - since) / 60:.0f} min "
            f"for the operator: {question.prompt}",
            experiment=question.experiment_id,
        )

    def _check_queue(self, now: float) -> None:
        key = "stall:queue"
        idle = all(not lane.busy for lane in self.lanes)
        queued = self._queued() if idle else []
        if not queued or self._held():
            self.last_start = now  # nothing could start: the wait counts from now
            self.alerts.clear(key)
            return
        if now - self.last_start < self.queue_stall:
            return
        first = queued[0]
        why = self._why().get(first, "it was not claimed")
        self.alerts.raise_(
            key,
            "queue stalled",
            f"{len(queued)} experiment(s) queued, the lab idle and not held, but none has "
            f"started for {(now - self.last_start) / 60:.0f} min; {first}: {why}",
        )


def _on_device(message: str) -> bool:
    return message.split(" ", 1)[0] in DEVICE_MESSAGES


__all__ = ["STALL_FLOOR", "LaneWatch", "Watchdogs"]
