"""The worker's link to a service it needs (Prefect): reachable, or unreachable since when.

A call that fails because the service cannot be reached (:func:`~remotelab.queue.prefect_api.
unreachable`) is recorded with :meth:`Link.failed`, which opens an alert ("Prefect unreachable
since 02:14:05, retrying") and gives the capped back-off before the next try; the first call
that succeeds again closes it (:meth:`Link.ok`). The worker retries for ever: it never dies
of a lost connection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from remotelab.queue.prefect_api import unreachable
from remotelab.worker.alerts import Alerts

log = logging.getLogger("remotelab.worker")
T = TypeVar("T")

#: the first retry's delay (s), doubled after each failure up to :data:`BACKOFF_CAP`
BACKOFF_FIRST = 0.25
BACKOFF_CAP = 15.0


class Backoff:
    """Delays that double from ``first`` up to ``cap`` (seconds)."""

    def __init__(self, first: float = BACKOFF_FIRST, cap: float = BACKOFF_CAP):
        self.first = first
        self.cap = cap
        self.failures = 0

    def next(self) -> float:
        """The delay before the next try, counting one more failure."""
        delay = min(self.cap, self.first * 2**self.failures)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


class Link:
    """What a worker knows of its link to ``name``, with the back-off of its retries."""

    def __init__(
        self,
        name: str,
        alerts: Alerts,
        *,
        first: float = BACKOFF_FIRST,
        cap: float = BACKOFF_CAP,
        clock: Callable[[], float] = time.time,
    ):
        self.name = name
        self.alerts = alerts
        self.key = f"link:{name.lower()}"
        self._backoff = Backoff(first, cap)
        self._clock = clock
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self.last_error = ""
        #: outages seen since the worker started
        self.outages = 0

    @property
    def reachable(self) -> bool:
        return self.down_since is None

    def describe(self) -> dict[str, Any]:
        """As the worker shows it: reachable, since when not, outages, the back-off now."""
        down = self.down_since
        return {
            "reachable": down is None,
            "down_since": None if down is None else datetime.fromtimestamp(down, UTC).isoformat(),
            "last_error": "" if down is None else self.last_error,
            "outages": self.outages,
            "retry_in": self.retry_in,
        }

    def ok(self) -> None:
        """A call went through: the link is up (again)."""
        if self.down_since is None:
            return
        with self._lock:
            since, self.down_since = self.down_since, None
            self._backoff.reset()
        if since is not None:
            log.warning(
                "%s reachable again after %.0f s unreachable", self.name, self._clock() - since
            )
            self.alerts.clear(self.key)

    @property
    def retry_in(self) -> float:
        """The back-off now (s): how long a loop that met the outage waits before trying."""
        with self._lock:
            failures = self._backoff.failures
        if failures == 0:
            return 0.0
        return min(self._backoff.cap, self._backoff.first * 2 ** (failures - 1))

    def failed(self, exc: BaseException, *, since: float | None = None) -> float:
        """A call (begun at ``since``) could not reach the service: note it; the seconds to
        wait before retrying."""
        with self._lock:
            first = self.down_since is None
            if first:
                self.down_since = since if since is not None else self._clock()
                self.outages += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            delay = self._backoff.next()
            since = self.down_since
        if first:
            log.warning("%s unreachable (%s): retrying", self.name, self.last_error)
        assert since is not None
        at = datetime.fromtimestamp(since).strftime("%H:%M:%S")
        self.alerts.raise_(self.key, "unreachable", f"{self.name} unreachable since {at}, retrying")
        return delay

    def until_reached(self, step: Callable[[], T], stopping: threading.Event) -> T:
        """``step()``, tried again after the back-off for as long as the service cannot be
        reached (other errors, and any once ``stopping`` is set, are raised)."""
        while True:
            try:
                return step()
            except Exception as exc:
                if self.check(exc) is None or stopping.is_set():
                    raise
                stopping.wait(max(self.retry_in, 0.1))

    def check(self, exc: BaseException, *, since: float | None = None) -> float | None:
        """The back-off if ``exc`` says the service is unreachable (noted), else None."""
        return self.failed(exc, since=since) if unreachable(exc) else None


class Watched:
    """``target`` (e.g. the lab's Prefect adapter), every call of which tells ``link``
    whether the service was reached: the link's state is what the last call saw."""

    def __init__(self, target: Any, link: Link):
        self._target = target
        self._link = link

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value) or name.startswith("_"):
            return value
        link = self._link

        def call(*args: Any, **kwargs: Any) -> Any:
            began = link._clock()
            try:
                result = value(*args, **kwargs)
            except Exception as exc:
                link.check(exc, since=began)
                raise
            link.ok()
            return result

        return call


__all__ = ["BACKOFF_CAP", "BACKOFF_FIRST", "Backoff", "Link", "Watched"]
