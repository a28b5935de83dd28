"""The worker's side of the control channel: one handler per command, in a table.

Like the RunEngine's command table, :class:`CommandTable` maps each command type
(:mod:`remotelab.queue.commands`) to the method that serves it; a command that names an
experiment other than the one running is refused before it reaches its handler.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from remotelab.queue.commands import (
    Abort,
    Answer,
    Cancel,
    Command,
    Hold,
    Pause,
    Release,
    Reply,
    Resume,
    Status,
    Stop,
    Wake,
)
from remotelab.worker.claiming import Claimer
from remotelab.worker.questions import Questions
from remotelab.worker.running import Runner


class CommandTable:
    """Serves control commands for one worker from its parts."""

    def __init__(
        self,
        worker_id: str,
        claimer: Claimer,
        runner: Runner,
        questions: Questions,
        status: Callable[[], dict[str, Any]],
        wake: threading.Event,
    ):
        self.worker_id = worker_id
        self.claimer = claimer
        self.runner = runner
        self.questions = questions
        self.status = status
        self.wake = wake
        self.table: dict[type, Callable[[Any], Reply]] = {
            Wake: self._new_work,
            Hold: self._hold_changed,
            Release: self._hold_changed,
            Status: self._status,
            Answer: self._answer,
            Pause: self.runner.interrupt,
            Resume: self.runner.interrupt,
            Stop: self.runner.interrupt,
            Abort: self.runner.interrupt,
            Cancel: self.runner.interrupt,
        }

    def __call__(self, command: Command) -> Reply:
        meant = getattr(command, "experiment", None)
        if hasattr(command, "experiment"):
            current = self.runner.current
            if current is None:
                return Reply.refused(f"worker {self.worker_id} runs no experiment now")
            if meant and meant != current.exp.id:
                return Reply.refused(
                    f"experiment {meant} is not the one running (that is {current.exp.id})"
                )
        return self.table[type(command)](command)

    def _new_work(self, _command: Wake) -> Reply:
        self.claimer.invalidate()
        self.wake.set()
        return Reply.done()

    def _hold_changed(self, _command: Hold | Release) -> Reply:
        self.claimer.invalidate(held=True)
        self.wake.set()
        return Reply.done()

    def _status(self, _command: Status) -> Reply:
        return Reply(ok=True, info=self.status())

    def _answer(self, command: Answer) -> Reply:
        return self.questions.answer(command.value)


__all__ = ["CommandTable"]
