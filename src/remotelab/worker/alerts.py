"""The worker's open alerts: what someone should look at, while it lasts.

An alert has a key (one alert per key is open at a time), a kind, a message and the time it
was first raised. The worker shows its open alerts in its live status and its announcement
(the dashboard and ``remotelab lab`` read them there); :attr:`Alerts.on_raise` hears each new
one (notifications plug in there), :attr:`Alerts.on_change` each change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("remotelab.worker")


@dataclass(frozen=True)
class Alert:
    """One open alert."""

    key: str
    kind: str
    message: str
    since: float
    experiment: str | None = None

    def to_value(self) -> dict[str, Any]:
        """As the worker shows it: JSON-ready, the time as an ISO date."""
        return {
            "key": self.key,
            "kind": self.kind,
            "message": self.message,
            "since": datetime.fromtimestamp(self.since, UTC).isoformat(),
            "experiment": self.experiment,
        }


class Alerts:
    """The open alerts of one worker, by key (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._open: dict[str, Alert] = {}
        self._lock = threading.Lock()
        #: called with each alert when it is first raised (not when its message changes)
        self.on_raise: list[Callable[[Alert], Any]] = []
        #: called with the open alerts after every change
        self.on_change: list[Callable[[list[Alert]], Any]] = []

    def raise_(self, key: str, kind: str, message: str, *, experiment: str | None = None) -> Alert:
        """Open alert ``key`` (or update its message: it keeps the time it was raised)."""
        with self._lock:
            before = self._open.get(key)
            if before is not None and before.message == message:
                return before
            since = before.since if before is not None else self._clock()
            alert = Alert(key, kind, message, since, experiment)
            self._open[key] = alert
        if before is None:
            log.warning("alert: %s", message)
            self._call(self.on_raise, alert)
        self._changed()
        return alert

    def clear(self, key: str) -> Alert | None:
        """Close alert ``key``; the alert closed, or None if it was not open."""
        with self._lock:
            alert = self._open.pop(key, None)
        if alert is not None:
            log.info("alert over: %s", alert.message)
            self._changed()
        return alert

    def get(self, key: str) -> Alert | None:
        with self._lock:
            return self._open.get(key)

    def open(self) -> list[Alert]:
        """The open alerts, oldest first."""
        with self._lock:
            return sorted(self._open.values(), key=lambda a: a.since)

    def to_value(self) -> list[dict[str, Any]]:
        return [a.to_value() for a in self.open()]

    def _changed(self) -> None:
        self._call(self.on_change, self.open())

    @staticmethod
    def _call(listeners: list[Callable[[Any], Any]], value: Any) -> None:
        for listener in list(listeners):
            try:
                listener(value)
            except Exception as exc:  # a listener never breaks the worker
                log.warning("an alert listener failed: %s", exc)


__all__ = ["Alert", "Alerts"]
