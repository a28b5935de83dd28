"""What a worker is doing, read off its lanes: the first lane's RunEngine, runner and
questions (the only ones when the lab runs one experiment at a time), the experiments
running and the question asked now. :class:`~remotelab.worker.lab_worker.LabWorker` has them
from :class:`LaneViews`."""

from __future__ import annotations

from bluesky import RunEngine

from remotelab.queue.models import Experiment, Question
from remotelab.worker.lanes import Lane
from remotelab.worker.questions import Questions
from remotelab.worker.running import Runner


class LaneViews:
    """Read-only views of ``lanes``."""

    lanes: list[Lane]

    @property
    def RE(self) -> RunEngine:
        """The first lane's RunEngine (the only one when the lab runs one experiment at a time)."""
        return self.lanes[0].RE

    @property
    def runner(self) -> Runner:
        """The first lane's runner."""
        return self.lanes[0].runner

    @property
    def questions(self) -> Questions:
        """The first lane's questions."""
        return self.lanes[0].questions

    def _running(self) -> list[Lane]:
        return [lane for lane in self.lanes if lane.runner.current is not None]

    # -- what it is doing ------------------------------------------------------------------
    @property
    def current(self) -> Experiment | None:
        """The experiment it runs now (the first, if it runs several)."""
        for lane in self.lanes:
            current = lane.runner.current
            if current is not None:
                return current.exp
        return None

    @property
    def running(self) -> list[Experiment]:
        """Every experiment it runs now."""
        return [c.exp for lane in self.lanes if (c := lane.runner.current) is not None]

    @property
    def question(self) -> Question | None:
        """The question a running plan asks the operator now (the first, if several ask)."""
        for lane in self.lanes:
            if lane.questions.question is not None:
                return lane.questions.question
        return None


__all__ = ["LaneViews"]
