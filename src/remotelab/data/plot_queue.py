"""Each finished run's summary plot, rendered in a background thread.

:class:`PlotQueue` renders with :func:`remotelab.data.plots.render_run` (matplotlib is only
imported once the first plot is drawn) and stores the PNG with the run; a failed plot is
logged and recorded in :attr:`PlotQueue.errors`, never raised into the run store.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from remotelab.data.store import RunStore

log = logging.getLogger("remotelab.data.store")


class PlotQueue:
    """Render and store the plots of ``store``'s runs, one at a time, off the caller's thread."""

    def __init__(self, store: RunStore):
        self.store = store
        #: run uid -> why its plot could not be made
        self.errors: dict[str, str] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._futures: list[Future] = []

    def schedule(self, run_uid: str) -> None:
        """Render the plot of ``run_uid`` after those already scheduled."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="remotelab-plots")
        self._futures = [f for f in self._futures if not f.done()]
        self._futures.append(self._pool.submit(self._render, run_uid))

    def _render(self, run_uid: str) -> None:
        from remotelab.data.plots import render_run

        try:
            self.store.put_plot(run_uid, render_run(self.store, run_uid))
        except Exception as exc:  # a plot must never break the run store
            log.exception("plot of run %s failed", run_uid)
            self.errors[run_uid] = f"{type(exc).__name__}: {exc}"

    def wait(self, timeout: float | None = 60.0) -> None:
        """Wait until every scheduled plot is rendered and stored."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for fut in list(self._futures):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            fut.result(remaining)

    def close(self, timeout: float | None = 60.0) -> None:
        """Wait for the scheduled plots, then stop the rendering thread."""
        if self._pool is not None:
            try:
                self.wait(timeout)
            finally:
                self._pool.shutdown(wait=True)
                self._pool = None


__all__ = ["PlotQueue"]
