"""What the worker tells people (:mod:`remotelab.notify`): an experiment that failed or
crashed, a plan's question to the operator. Each is sent without waiting
(:meth:`~remotelab.notify.Notifier.send`); a target that is down never holds up a plan."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from remotelab.notify import Event, EventKind, Notifier
from remotelab.queue.models import Experiment, ExperimentState, Question

log = logging.getLogger("remotelab.worker")

_ENDS = {
    ExperimentState.failed: EventKind.experiment_failed,
    ExperimentState.crashed: EventKind.experiment_crashed,
}


def about(
    kind: EventKind, exp: Experiment, message: str, *, lab: str = "", worker: str | None = None
) -> Event:
    """An event about experiment ``exp`` (of lab ``lab`` if its tags do not say)."""
    return Event(
        kind=kind,
        lab=exp.lab or lab,
        experiment_id=exp.id,
        submitter=exp.submitter or None,
        plan=exp.plan,
        worker=worker,
        message=message,
    )


def held_event(lab: str, why: str, error: BaseException | None) -> Event:
    """The lab held because devices failed their safe state after ``why``."""
    return Event(
        kind=EventKind.lab_held,
        lab=lab,
        message=f"devices failed their safe state after {why}: {error}; the lab is held "
        "until a manager makes them safe and releases it (remotelab lab release)",
    )


class Notices:
    """The worker's notifications of lab ``lab`` through ``notifier``."""

    def __init__(self, notifier: Notifier, lab: str, worker_id: str):
        self.notifier = notifier
        self.lab = lab
        self.worker_id = worker_id

    def ended(self, exp: Experiment) -> None:
        """An experiment recorded as ended: its people are told if it failed or crashed."""
        kind = _ENDS.get(exp.state)
        if kind is None:
            return
        text = f"{exp.plan} submitted by {exp.submitter or '?'} ended {exp.state.value}"
        detail = exp.error or exp.message
        self.notifier.send(
            about(
                kind,
                exp,
                f"{text}: {detail}" if detail else text,
                lab=self.lab,
                worker=self.worker_id,
            )
        )

    def crashed(self, experiments: Iterable[Experiment]) -> None:
        """Experiments a dead worker left running, marked crashed."""
        for exp in experiments:
            self.notifier.send(
                about(
                    EventKind.experiment_crashed,
                    exp,
                    exp.message or "its worker ended without finishing it",
                    lab=self.lab,
                )
            )

    def question(self, exp: Experiment | None, question: Question) -> None:
        """A plan asks the operator (answered with ``remotelab answer``)."""
        try:
            event = Event(
                kind=EventKind.operator_question,
                lab=(exp.lab if exp else "") or self.lab,
                experiment_id=question.experiment_id,
                submitter=(exp.submitter or None) if exp else None,
                plan=exp.plan if exp else None,
                worker=self.worker_id,
                message=f"the plan asks the operator ({question.kind}): {question.prompt} "
                f"(remotelab answer {question.experiment_id} VALUE)",
            )
            self.notifier.send(event)
        except Exception as exc:  # a notification never disturbs the plan
            log.warning("could not notify the operator's question: %s", exc)

    def watch(self, lane: Any) -> None:
        """Tell of every question ``lane``'s plans ask."""

        def asked(question: Question) -> None:
            current = lane.runner.current
            self.question(current.exp if current is not None else None, question)

        lane.questions.on_ask.append(asked)


__all__ = ["Notices", "about", "held_event"]
