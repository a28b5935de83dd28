"""Serving a plan's questions to the operator (the ``ask_operator`` RunEngine command).

The plan's ``yield from ask_operator(...)`` (:mod:`remotelab.worker.operator`) reaches
:meth:`Questions.ask` on the RunEngine's loop: the experiment goes ``AwaitingOperator`` with
the question in its state message and in the worker's announcement, and the plan waits until
:meth:`Questions.answer` (a control command) gives the value the stub returns.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any
from uuid import uuid4

from prefect.states import Paused, Running, State

from remotelab.queue.commands import Reply
from remotelab.queue.messages import AWAITING_OPERATOR
from remotelab.queue.models import Question

log = logging.getLogger("remotelab.worker")


class Questions:
    """The question the running plan asks, if any, and its answer.

    ``experiment()`` is the id of the experiment running; ``set_state`` records the wait;
    ``announce`` tells the queue the question (both called off the RunEngine's loop).
    """

    def __init__(
        self,
        experiment: Callable[[], str],
        set_state: Callable[[str, State], object],
        announce: Callable[[], None],
        tag: str,
    ):
        self._experiment = experiment
        self._set_state = set_state
        self._announce = announce
        self.tag = tag
        self._lock = threading.Lock()
        self.question: Question | None = None
        self._future: tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]] | None = None
        #: called with each question once it is shown (e.g. to notify the operator)
        self.on_ask: list[Callable[[Question], None]] = []

    async def ask(self, msg: Any) -> Any:
        """The RunEngine command: ask, wait for the answer, return it."""
        prompt = msg.args[0] if msg.args else msg.kwargs.get("prompt", "confirm")
        kind = msg.kwargs.get("kind", "confirm")
        exp_id = self._experiment()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        question = Question(id=uuid4().hex[:8], experiment_id=exp_id, prompt=str(prompt), kind=kind)
        with self._lock:
            self._future = (loop, future)
        waiting: State = Paused(
            name=AWAITING_OPERATOR, message=f"{self.tag} asks the operator ({kind}): {prompt}"
        )
        # the experiment reads as waiting on the operator before anyone is shown the question
        await loop.run_in_executor(None, self._quietly, exp_id, waiting)
        with self._lock:
            self.question = question
        await loop.run_in_executor(None, self._announce)
        for told in self.on_ask:
            try:
                told(question)
            except Exception as exc:
                log.warning("could not tell of the question: %s", exc)
        try:
            value = await future
        finally:
            self.clear()
        answered: State = Running(message=f"{self.tag} the operator answered {value!r}")
        await loop.run_in_executor(None, self._quietly, exp_id, answered)
        return value

    def answer(self, value: Any) -> Reply:
        """Answer the question asked now; refused if none is."""
        with self._lock:
            pending = self._future
        if pending is None:
            return Reply.refused(f"experiment {self._experiment()} asks no question now")
        loop, future = pending

        def give() -> None:
            if not future.done():
                future.set_result(value)

        loop.call_soon_threadsafe(give)
        return Reply.done()

    def clear(self) -> None:
        """No question is asked now."""
        with self._lock:
            self.question = None
            self._future = None

    def _quietly(self, run_id: str, state: State) -> None:
        try:
            self._set_state(run_id, state)
        except Exception as exc:
            log.warning("could not set state %s: %s", state.name, exc)


__all__ = ["Questions"]
