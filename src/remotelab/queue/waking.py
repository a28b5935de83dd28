"""Wake-ups sent to a lab's workers in the background, so that a submission never waits on a
worker's control channel.

A submission (or an approval, a move, an edit) tells the lab's live workers there is work.
Done in the caller's thread, that cost a zmq round trip per announced worker, up to its
timeout for one that does not answer (a worker killed a moment ago, whose announcement has
not yet been removed): a second per such worker on every submission. :class:`Waker` sends
them from a thread of its own, to every worker at once
(:func:`~remotelab.queue.control.request_many`); wake-ups asked for while one is on its way
make one more, not one each. A worker that misses one still polls Prefect.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from remotelab.queue import control
from remotelab.queue.announcement import WorkerAnnouncement
from remotelab.queue.commands import Wake

log = logging.getLogger("remotelab.queue")

#: how long (s) a wake-up waits for the workers' answers
WAKE_TIMEOUT = 1.0


class Waker:
    """Wakes the workers ``workers()`` returns, on a daemon thread (started on first use)."""

    def __init__(
        self, workers: Callable[[], list[WorkerAnnouncement]], timeout: float = WAKE_TIMEOUT
    ):
        self._workers = workers
        self.timeout = timeout
        self._due = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        #: wake-up rounds sent, and how many workers answered the last one
        self.rounds = 0
        self.answered = 0

    def wake(self) -> None:
        """Ask for a wake-up of every live worker, soon; returns at once."""
        with self._lock:
            if self._closed:
                return
            self._idle.clear()
            self._due.set()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="remotelab-waker", daemon=True
                )
                self._thread.start()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every wake-up asked for has been sent; whether it has."""
        return self._idle.wait(timeout)

    def _loop(self) -> None:
        while True:
            self._due.wait()
            with self._lock:
                if self._closed:
                    return
                self._due.clear()
            try:
                addresses = [w.control_address for w in self._workers() if w.control]
                self.answered = len(control.request_many(addresses, Wake(), self.timeout))
            except Exception as exc:  # the workers poll Prefect anyway
                log.warning("could not wake the lab's workers: %s", exc)
            self.rounds += 1
            with self._lock:
                if not self._due.is_set():
                    self._idle.set()

    def close(self) -> None:
        """Send no more wake-ups."""
        with self._lock:
            self._closed = True
            self._due.set()
            self._idle.set()


__all__ = ["WAKE_TIMEOUT", "Waker"]
