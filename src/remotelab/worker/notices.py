"""What the worker tells people (:mod:`remotelab.notify`): an experiment that failed or
crashed, a plan's question to the operator, and each alert it raises (the lab held by a
fault, a watchdog's stall, Prefect unreachable, the disk filling). Each is sent without
waiting (:meth:`~remotelab.notify.Notifier.send`); a target that is down never holds up a
plan."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from remotelab.notify import Event, EventKind, Notifier
from remotelab.queue.models import Experiment, ExperimentState, Question
from remotelab.worker.alerts import Alert
from remotelab.worker.faults import FaultGuard

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


class Notices:
    """The worker's notifications of lab ``lab`` through ``notifier``; ``running()`` gives
    the experiments running now (whose submitters hear of their alerts)."""

    def __init__(
        self,
        notifier: Notifier,
        lab: str,
        worker_id: str,
        running: Callable[[], list[Experiment]] = list,
    ):
        self.notifier = notifier
        self.lab = lab
        self.worker_id = worker_id
        self.running = running

    def alert(self, alert: Alert) -> None:
        """An alert first raised: the lab held by a fault, or a watchdog's (stalls, Prefect
        unreachable, the disk filling)."""
        held = alert.key == FaultGuard.HOLD
        exp = next((e for e in self.running() if e.id == alert.experiment), None)
        message = alert.message
        if held:
            message += "; a manager releases it once put right (remotelab lab release)"
        self.notifier.send(
            Event(
                kind=EventKind.lab_held if held else EventKind.watchdog_alert,
                lab=self.lab,
                experiment_id=alert.experiment,
                submitter=(exp.submitter or None) if exp else None,
                plan=exp.plan if exp else None,
                worker=self.worker_id,
                message=message,
            )
        )

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


__all__ = ["Notices", "about"]
