"""What a worker is doing, read off its lanes: the first lane's RunEngine, runner and
questions (the only ones when the lab runs one experiment at a time), the experiments
running and the question asked now; its peers, whether the lab is held and what is queued.
:class:`~remotelab.worker.lab_worker.LabWorker` has them from :class:`LaneViews`, with what it
announces of itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bluesky import RunEngine

from remotelab.queue.models import Experiment, Question
from remotelab.worker.dispatch import booking_view, samples_view
from remotelab.worker.lanes import Lane
from remotelab.worker.questions import Questions
from remotelab.worker.running import Runner

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

    from remotelab.lab import Lab
    from remotelab.lab.reservations import Reservations
    from remotelab.queue.control import ControlServer
    from remotelab.worker.alerts import Alerts
    from remotelab.worker.claiming import Claimer
    from remotelab.worker.dispatch import DeviceLeases, Dispatcher
    from remotelab.worker.link import Link
    from remotelab.worker.presence import Presence


class LaneViews:
    """Read-only views of ``lanes`` (and, for its announcement, of the worker's parts)."""

    lanes: list[Lane]
    id: str
    name: str
    lab: Lab
    control: ControlServer | None
    book: Reservations
    dispatcher: Dispatcher
    leases: DeviceLeases
    alerts: Alerts
    link: Link
    claimer: Claimer
    presence: Presence

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

    def peers(self) -> list[dict[str, Any]]:
        """The other live workers of this lab, as they announce themselves."""
        return [p.to_value() for p in self.presence.peers()]

    def held(self) -> bool:
        """Whether the lab is held (re-read at most every poll interval, and at once after a
        wake-up or hold message)."""
        return self.claimer.is_held()

    def candidates(self) -> list[FlowRun]:
        """The next few queued flow runs of the lab, in the order they should run."""
        return self.claimer.candidates()

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

    def _describe(self) -> dict[str, Any]:
        """What the worker announces of itself (its presence record and live status)."""
        running = [info for lane in self.lanes if (info := lane.describe()) is not None]
        question = self.question
        first = running[0] if running else None
        return {
            "id": self.id,
            "lab": self.name,
            "control": self.control.endpoint if self.control else "",
            "control_key": self.control.address.key if self.control else "",
            "current": first["id"] if first else None,
            "question": question.model_dump() if question else None,
            "re_state": first["re_state"] if first else str(self.RE.state),
            "concurrency": len(self.lanes),
            "running": running,
            **booking_view(self.book, self.dispatcher.waiting),
            "samples": samples_view(self.lab),
            "leases": sorted(self.leases.leases),
            "alerts": self.alerts.to_value(),
            "prefect": self.link.describe(),
        }


__all__ = ["LaneViews"]
