"""What remotelab tells people: the kinds of event (:class:`EventKind`) and one event
(:class:`Event`), with the title and text a notification carries."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class EventKind(StrEnum):
    """What happened, as subscriptions name it (``remotelab notify add --event KIND``)."""

    experiment_failed = "experiment_failed"
    experiment_crashed = "experiment_crashed"
    awaiting_approval = "awaiting_approval"
    operator_question = "operator_question"
    lab_held = "lab_held"
    worker_lost = "worker_lost"
    watchdog_alert = "watchdog_alert"
    #: a notification asked for by ``remotelab notify test`` (never subscribed to)
    test = "test"


#: the kinds a subscription may name (every kind but ``test``)
SUBSCRIBABLE: tuple[EventKind, ...] = tuple(k for k in EventKind if k != EventKind.test)
#: the kinds about the lab as a whole: a manager's own subscription receives them whoever
#: submitted the experiment (a researcher's only for their own experiments)
LAB_WIDE = frozenset(
    {
        EventKind.awaiting_approval,
        EventKind.operator_question,
        EventKind.lab_held,
        EventKind.worker_lost,
        EventKind.watchdog_alert,
    }
)

_HEADLINES = {
    EventKind.experiment_failed: "experiment {exp} failed",
    EventKind.experiment_crashed: "experiment {exp} crashed",
    EventKind.awaiting_approval: "experiment {exp} waits for approval",
    EventKind.operator_question: "experiment {exp} asks the operator",
    EventKind.lab_held: "the lab is held",
    EventKind.worker_lost: "worker {worker} lost",
    EventKind.watchdog_alert: "watchdog alert",
    EventKind.test: "a test notification",
}


def now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """One thing that happened in a lab that someone may need to act on."""

    kind: EventKind
    lab: str
    message: str = Field("", description="what happened, in a sentence or two")
    experiment_id: str | None = None
    submitter: str | None = Field(None, description="who submitted the experiment")
    plan: str | None = None
    worker: str | None = Field(None, description="the worker it concerns (worker lost)")
    time: datetime = Field(default_factory=now)

    def title(self) -> str:
        """The notification's subject line."""
        headline = _HEADLINES[self.kind].format(
            exp=(self.experiment_id or "")[:8] or "?", worker=self.worker or "?"
        )
        return f"[remotelab] {self.lab}: {headline}"

    def body(self) -> str:
        """The notification's text: the message, then the facts."""
        facts = [
            ("lab", self.lab),
            ("event", self.kind.value),
            ("experiment", self.experiment_id),
            ("plan", self.plan),
            ("submitter", self.submitter),
            ("worker", self.worker),
            ("time", self.time.isoformat(timespec="seconds")),
        ]
        lines = [self.message] if self.message else []
        lines += [f"{key}: {value}" for key, value in facts if value]
        return "\n".join(lines)


__all__ = ["LAB_WIDE", "SUBSCRIBABLE", "Event", "EventKind"]
