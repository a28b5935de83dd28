"""Recording a finished experiment in Prefect, and leaving the lab safe.

:class:`Recorder` turns an ended experiment into its outcome (:mod:`remotelab.worker.outcome`),
drives the lab to its safe state when it did not complete, and writes the final state, whose
message carries the outcome (:mod:`remotelab.queue.messages`); the run's labels, the summary
artifact and the failure logs go to a background thread, in order (they may lag behind; the
state does not).
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from remotelab.errors import SafeStateError
from remotelab.notify import notifier_of
from remotelab.queue.messages import outcome_tail, run_labels
from remotelab.queue.models import Experiment, state_of
from remotelab.queue.prefect_lab import LabOnPrefect, log_entry
from remotelab.worker.notices import held_event
from remotelab.worker.outcome import Outcome, decide, summary
from remotelab.worker.running import Ended

#: seconds a post-run record waits before it is written (see :meth:`Recorder._post_loop`)
RECORD_DELAY = 0.2

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
        notifier_of(lab).send(held_event(prefect.name, why, sys.exc_info()[1]))
        raise


class Recorder:
    """Records ended experiments of a lab for worker ``worker_id``."""

    def __init__(
        self,
        prefect: LabOnPrefect,
        lab: Any,
        *,
        worker_id: str,
        tag: str,
        data_url: str | None = None,
    ):
        self.prefect = prefect
        self.lab = lab
        self.worker_id = worker_id
        self.tag = tag
        self.data_url = data_url
        self._jobs: queue.Queue[tuple[float, Callable[[], Any]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closing = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._post_loop, name="remotelab-post", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is still waiting (up to ``timeout`` s) and stop."""
        self._closing = True
        self._jobs.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def _post_loop(self) -> None:
        """Writes that may lag behind the experiment (the artifact, logs), in order; each
        waits :data:`RECORD_DELAY` after it was queued, so the next experiment's claim, made
        as this one ends, does not queue behind them for Prefect's database."""
        while True:
            item = self._jobs.get()
            if item is None:
                return
            queued_at, job = item
            if not self._closing:
                time.sleep(max(0.0, queued_at + RECORD_DELAY - time.monotonic()))
            try:
                job()
            except Exception as exc:
                log.warning("could not record in Prefect: %s", exc)

    def finish(self, ended: Ended, devices: Iterable[str] | None = None) -> Experiment:
        """Record an ended experiment: outcome, safe state, labels, final state, summary.

        An experiment that did not complete leaves ``devices`` safe (None: the whole lab).
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
        state = outcome.state(self.tag, suffix + outcome_tail(current.uids, outcome.exit_status))
        labels = run_labels(self.worker_id, current.uids, outcome.exit_status)
        if not self.prefect.set_state(exp.id, state).accepted:
            self.prefect.set_state(exp.id, state, force=True)
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
        queued_at = time.monotonic()
        self._jobs.put((queued_at, lambda: self.prefect.update_labels(exp.id, labels)))
        self._jobs.put((queued_at, lambda: self._record(exp, outcome, text, ended, unsafe)))
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

    def _record(
        self, exp: Experiment, outcome: Outcome, text: str, ended: Ended, unsafe: Any
    ) -> None:
        now = datetime.now(UTC)
        logs = []  # a completed run's summary is its artifact; failures are logged as well
        if ended.error is not None or unsafe is not None:
            logs.append(log_entry(exp.id, logging.INFO, text, now))
        if ended.error is not None:
            logs.append(log_entry(exp.id, logging.ERROR, ended.traceback, now))
        if unsafe is not None:
            message = f"devices not in their safe state, lab held: {unsafe}"
            logs.append(log_entry(exp.id, logging.CRITICAL, message, now))
        self.prefect.record(exp.id, text, f"remotelab experiment {exp.id} ({exp.plan})", logs)


__all__ = ["Recorder", "make_safe"]
