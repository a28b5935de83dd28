"""Recording a finished experiment in Prefect, and leaving the lab safe.

:class:`Recorder` turns an ended experiment into its outcome (:mod:`remotelab.worker.outcome`),
drives the lab to its safe state when it did not complete, and records the final state, whose
message carries the outcome (:mod:`remotelab.queue.messages`), the run's labels, the summary
artifact and the failure logs through the worker's durable outbox (:mod:`remotelab.worker.
outbox`): the state is delivered at once when Prefect can be reached, the rest a moment later,
and all of it when Prefect is back after an outage, or by the next worker after a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect.client.schemas.actions import LogCreate
from prefect.states import State

from remotelab.errors import SafeStateError
from remotelab.queue.messages import outcome_tail, run_labels
from remotelab.queue.models import Experiment, state_of
from remotelab.queue.prefect_lab import LabOnPrefect, log_entry
from remotelab.worker.link import Link
from remotelab.worker.outbox import Outbox
from remotelab.worker.outcome import decide, summary
from remotelab.worker.running import Ended

#: seconds a post-run record waits before it is written (see :meth:`Recorder._post_loop`)
RECORD_DELAY = 0.2
#: an outcome waiting for its run's Running state is not delivered by the background before
#: this (it is made due as soon as the start is done; a worker that adopts it, at once)
UNTIL_STARTED = 60.0

log = logging.getLogger("remotelab.worker")


def make_safe(
    lab: Any, prefect: LabOnPrefect, why: str, devices: Iterable[str] | None = None
) -> None:
    """Drive the lab (or only ``devices``) to its safe state; if that fails, hold the lab
    and re-raise."""
    try:
        lab.safe_state() if devices is None else lab.safe_state(devices=devices)
    except SafeStateError:
        log.error("safe state failed after %s: holding lab %s", why, prefect.name)
        try:
            prefect.set_held(True)
        except Exception as exc:
            log.error("could not hold lab %s: %s", prefect.name, exc)
        raise


class Recorder:
    """Records ended experiments of a lab for worker ``worker_id``, through ``outbox``."""

    def __init__(
        self,
        prefect: LabOnPrefect,
        lab: Any,
        *,
        worker_id: str,
        tag: str,
        link: Link,
        data_url: str | None = None,
        outbox_path: str | Path | None = None,
        scope: str = "",
    ):
        self.prefect = prefect
        self.lab = lab
        self.worker_id = worker_id
        self.tag = tag
        self.data_url = data_url
        #: called with the reason when an experiment left devices that failed their safe state
        self.on_unsafe: list[Callable[[str], Any]] = []
        self.outbox = Outbox(
            outbox_path,
            owner=worker_id,
            scope=scope or prefect.name,
            link=link,
            handlers={
                "state": self._deliver_state,
                "labels": lambda p: self.prefect.update_labels(p["run"], p["labels"]),
                "record": self._deliver_record,
            },
        )

    def start(self) -> None:
        """Deliver in the background."""
        self.outbox.start()

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is still waiting (up to ``timeout`` s) and stop; the rest stays in
        the outbox for the next start."""
        self.outbox.close(timeout)

    def _deliver_state(self, payload: dict[str, Any]) -> None:
        state = State.model_validate(payload["state"])
        if not self.prefect.set_state(payload["run"], state).accepted:
            self.prefect.set_state(payload["run"], state, force=True)

    def _deliver_record(self, payload: dict[str, Any]) -> None:
        logs = [LogCreate.model_validate(entry) for entry in payload["logs"]]
        self.prefect.record(payload["run"], payload["summary"], payload["description"], logs)

    def finish(
        self,
        ended: Ended,
        devices: Iterable[str] | None = None,
        *,
        started: Callable[[], Any] | None = None,
    ) -> Experiment:
        """Record an ended experiment: outcome, safe state, labels, final state, summary.

        An experiment that did not complete leaves ``devices`` safe (None: the whole lab).
        ``started``: waits until the run's Running state was proposed (a short plan may end
        first); the outcome is on disk before that wait and told to Prefect after it.
        """
        current = ended.current
        exp = current.exp
        outcome = decide(
            current.exit_statuses,
            cancel_reason=current.cancel_reason,
            error=ended.error,
            stopped_early=current.stopped_early,
            runs=len(current.uids),
            duration=ended.duration,
        )
        suffix, unsafe = "", None
        if not outcome.completed:
            try:
                why = f"experiment {exp.id} ended {outcome.type.value}"
                if devices is None:
                    make_safe(self.lab, self.prefect, why)
                    suffix = "; devices safe"
                else:
                    devices = sorted(devices)
                    make_safe(self.lab, self.prefect, why, devices)
                    suffix = f"; its devices safe ({', '.join(devices) or 'none'})"
            except SafeStateError as exc:
                unsafe = exc
                suffix = f"; devices NOT safe, lab held: {exc}"
                for listener in self.on_unsafe:
                    listener(f"devices failed their safe state after experiment {exp.id}: {exc}")
        state = outcome.state(self.tag, suffix + outcome_tail(current.uids, outcome.exit_status))
        labels = run_labels(self.worker_id, current.uids, outcome.exit_status)
        # on disk first: the outcome is Prefect's as soon as it can be, whatever happens
        seq = self.outbox.put(
            exp.id,
            "state",
            {"run": exp.id, "state": state.model_dump(mode="json")},
            delay=0.0 if started is None else UNTIL_STARTED,
        )
        if started is not None:
            started()
            self.outbox.due_now(seq)
        if self.outbox.link.reachable:
            self.outbox.deliver(seq)  # at once; if not, from the outbox when Prefect is back
        text = summary(
            exp,
            outcome,
            lab=self.lab.name,
            worker=self.worker_id,
            uids=current.uids,
            duration=ended.duration,
            error=ended.error,
            unsafe=unsafe,
            data_url=self.data_url,
        )
        # these may lag: each waits RECORD_DELAY, so the next experiment's claim, made as
        # this one ends, does not queue behind them for Prefect's database
        self.outbox.put(exp.id, "labels", {"run": exp.id, "labels": labels}, delay=RECORD_DELAY)
        self.outbox.put(
            exp.id, "record", self._record(exp, text, ended, unsafe), delay=RECORD_DELAY
        )
        return exp.model_copy(
            update={
                "state": state_of(state.type.value, state.name),
                "state_name": state.name or "",
                "message": state.message or "",
                "ended": datetime.now(UTC),
                "run_uids": list(current.uids),
                "exit_status": outcome.exit_status,
                "worker": self.worker_id,
                "error": state.message if outcome.type.value == "FAILED" else None,
            }
        )

    @staticmethod
    def _record(exp: Experiment, text: str, ended: Ended, unsafe: Any) -> dict[str, Any]:
        """The summary artifact and the logs of an ended experiment, as an outbox record."""
        now = datetime.now(UTC)
        logs = []  # a completed run's summary is its artifact; failures are logged as well
        if ended.error is not None or unsafe is not None:
            logs.append(log_entry(exp.id, logging.INFO, text, now))
        if ended.error is not None:
            logs.append(log_entry(exp.id, logging.ERROR, ended.traceback, now))
        if unsafe is not None:
            message = f"devices not in their safe state, lab held: {unsafe}"
            logs.append(log_entry(exp.id, logging.CRITICAL, message, now))
        return {
            "run": exp.id,
            "summary": text,
            "description": f"remotelab experiment {exp.id} ({exp.plan})",
            "logs": [entry.model_dump(mode="json") for entry in logs],
        }


__all__ = ["Recorder", "make_safe"]
