"""The run store: every bluesky document persisted, durably, as it is emitted.

:class:`RunStore` is a bluesky callback ``(name, doc)`` over one SQLite file in WAL mode.
Each document is written in its own committed transaction before the callback returns,
and the RunEngine calls its callbacks before it goes on, so a document counts as
*emitted* once the RunEngine has handed it to its subscribers, and every emitted document
is in the database file: a worker killed at any point (even SIGKILL) loses none of them.
A run with no stop document is *incomplete*.

``synchronous=NORMAL`` (the default) makes a commit survive the death of the process;
``synchronous="FULL"`` also survives a power cut, at ~10× the cost per document.

The store is made of parts, one module each: :mod:`~remotelab.data.database` (the schema),
:mod:`~remotelab.data.writer` (writing), :mod:`~remotelab.data.reader` (the queries),
:mod:`~remotelab.data.plot_queue` (plots in the background), :mod:`~remotelab.data.models`
(the values queries return). The other sinks are in :mod:`~remotelab.data.sinks`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from remotelab.data.database import Synchronous
from remotelab.data.models import EventTable, RunSummary, Verification, content_hash
from remotelab.data.plot_queue import PlotQueue
from remotelab.data.reader import MIN_PREFIX, RunReader
from remotelab.data.sinks import DocumentSink, Fanout, TiledSink
from remotelab.data.writer import RunWriter
from remotelab.errors import StoreError
from remotelab.keys.seal import load_seal_key
from remotelab.settings import private_dir, private_file


class RunStore(RunReader):
    """A single-file store of bluesky runs; subscribe it to a RunEngine.

    >>> store = RunStore(tmp_path / "runs.sqlite")
    >>> RE.subscribe(store)

    ``plots=True`` renders each run's PNG in a background thread when its stop document
    arrives (see :mod:`remotelab.data.plots`); :meth:`wait_plots` waits for them. The
    queries (:meth:`runs`, :meth:`run`, :meth:`documents`, :meth:`table`, :meth:`verify`
    …) are those of :class:`~remotelab.data.reader.RunReader`.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        synchronous: Synchronous = "NORMAL",
        plots: bool = True,
        checkpoint_interval: float = 1.0,
        seal: bool = True,
    ):
        if path is None:
            from remotelab.settings import get_settings

            path = get_settings().store_path
        path = Path(path)
        if synchronous not in ("NORMAL", "FULL"):
            raise StoreError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        try:
            private_dir(path.parent)
        except OSError as exc:
            raise StoreError(f"cannot create the data directory {path.parent}: {exc}") from None
        try:
            private_file(path)
        except OSError as exc:
            raise StoreError(f"cannot create the run store {path}: {exc}") from None
        super().__init__(path, synchronous)
        if seal:
            try:
                self.seal_key = load_seal_key(make=True)
            except (OSError, ValueError) as exc:
                raise StoreError(f"cannot read or make the run seal key: {exc}") from None
        self._writer = RunWriter(
            path,
            synchronous,
            checkpoint_interval=checkpoint_interval,
            on_stop=self._stopped,
            seal_key=self.seal_key,
        )
        self._plot_queue = PlotQueue(self)
        self.plots = plots

    # -- writing -----------------------------------------------------------------------------
    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        """Store one document, committed before returning."""
        self._writer(name, doc)

    def _stopped(self, run_uid: str) -> None:
        if self.plots:
            self._plot_queue.schedule(run_uid)

    # -- plots -------------------------------------------------------------------------------
    @property
    def plot_errors(self) -> dict[str, str]:
        """Run uid -> why its plot could not be rendered."""
        return self._plot_queue.errors

    def wait_plots(self, timeout: float | None = 60.0) -> None:
        """Wait until every scheduled plot is rendered and stored."""
        self._plot_queue.wait(timeout)

    def put_plot(self, run_uid: str, png: bytes, name: str = "summary") -> None:
        """Store a PNG with a run (replacing one of the same name)."""
        self._reader().execute(
            "INSERT OR REPLACE INTO plots(run_uid, name, created, png) VALUES (?,?,?,?)",
            (run_uid, name, time.time(), png),
        )

    # -- life --------------------------------------------------------------------------------
    def close(self, timeout: float | None = 60.0) -> None:
        """Finish pending plots and close the database."""
        try:
            self._plot_queue.close(timeout)
        finally:
            self._writer.close()
            self._close_reader()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"


__all__ = [
    "MIN_PREFIX",
    "DocumentSink",
    "EventTable",
    "Fanout",
    "RunStore",
    "RunSummary",
    "TiledSink",
    "Verification",
    "content_hash",
]
