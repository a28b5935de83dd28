"""Long-lived worker threads that run the tasks given to them in order.

A worker's Prefect client is per thread (:class:`~remotelab.queue.prefect_api.ClientPerThread`),
so a thread made afresh for every experiment would open a client, a connection and a CSRF
token each time; a :class:`TaskThread` keeps its thread, and so its client, for the worker's
life. Its thread is a daemon: a plan that never ends does not keep the process alive.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class TaskThread:
    """One daemon thread that runs the tasks given to it, one after another."""

    def __init__(self, name: str):
        self.name = name
        self._tasks: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(*args)`` on the thread after the tasks before it; its future."""
        future: Future[T] = Future()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._tasks.put((future, lambda: fn(*args)))
        return future

    def stop(self) -> None:
        """Let the thread end after the tasks already given (it is not waited for)."""
        with self._lock:
            if self._thread is not None:
                self._tasks.put(None)
                self._thread = None

    def _loop(self) -> None:
        while (task := self._tasks.get()) is not None:
            future, call = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # the caller sees it through the future
                future.set_exception(exc)


__all__ = ["TaskThread"]
