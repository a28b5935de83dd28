"""The run store: every bluesky document persisted, durably, as it is emitted.

:class:`RunStore` is a bluesky callback ``(name, doc)`` over one SQLite file in WAL mode.
Each document is written in its own committed transaction before the callback returns,
and the RunEngine calls its callbacks before it goes on, so a document counts as
*emitted* once the RunEngine has handed it to its subscribers, and every emitted document
is in the database file: a worker killed at any point (even SIGKILL) loses none of them.
A run with no stop document is *incomplete*.

``synchronous=NORMAL`` (the default) makes a commit survive the death of the process;
``synchronous="FULL"`` also survives a power cut, at ~10× the cost per document.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from event_model import unpack_event_page

from remotelab.data.codec import decode, encode
from remotelab.errors import RunNotFound, StoreError

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    uid TEXT PRIMARY KEY,
    time REAL NOT NULL,
    stop_time REAL,
    experiment_id TEXT,
    plan_name TEXT,
    submitter TEXT,
    lab TEXT,
    scan_id INTEGER,
    exit_status TEXT,
    reason TEXT,
    num_events INTEGER,
    content_hash TEXT,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER
);
CREATE INDEX IF NOT EXISTS runs_experiment ON runs(experiment_id);
CREATE INDEX IF NOT EXISTS runs_plan ON runs(plan_name);
CREATE INDEX IF NOT EXISTS runs_submitter ON runs(submitter);
CREATE INDEX IF NOT EXISTS runs_time ON runs(time);
CREATE TABLE IF NOT EXISTS run_samples (
    run_uid TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    PRIMARY KEY (run_uid, sample_id)
);
CREATE INDEX IF NOT EXISTS run_samples_sample ON run_samples(sample_id);
-- one row per document, in emission order; a run's documents lie between its runs.first_seq
-- and runs.last_seq (no per-run index: each commit then writes one table page, not two)
CREATE TABLE IF NOT EXISTS documents (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_uid TEXT,
    name TEXT NOT NULL,
    uid TEXT,
    descriptor TEXT,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_link ON documents(uid)
    WHERE name IN ('descriptor', 'resource', 'stream_resource');
CREATE TABLE IF NOT EXISTS plots (
    run_uid TEXT NOT NULL,
    name TEXT NOT NULL,
    created REAL NOT NULL,
    png BLOB NOT NULL,
    PRIMARY KEY (run_uid, name)
);
"""

_SUMMARY_COLUMNS = (
    "r.uid, r.time, r.stop_time, r.experiment_id, r.plan_name, r.submitter, r.lab, r.scan_id,"
    " r.exit_status, r.reason, r.num_events, r.content_hash"
)

#: the fewest characters of a run uid that :meth:`RunStore.resolve` accepts as a prefix
MIN_PREFIX = 4

#: the document fields that tie a document to its run, in the order they are tried
_RUN_LINKS = ("run_start", "descriptor", "resource", "stream_resource")


@runtime_checkable
class DocumentSink(Protocol):
    """Where documents go: a bluesky callback that can be closed."""

    def __call__(self, name: str, doc: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RunSummary:
    """One row of a run query."""

    uid: str
    time: float
    stop_time: float | None
    experiment_id: str | None
    plan_name: str | None
    submitter: str | None
    lab: str | None
    scan_id: int | None
    exit_status: str | None
    reason: str | None
    num_events: int | None
    content_hash: str | None
    sample_ids: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """True once the run's stop document is stored."""
        return self.exit_status is not None

    @property
    def status(self) -> str:
        """``success`` / ``abort`` / ``fail`` from the stop document, or ``incomplete``."""
        return self.exit_status or "incomplete"

    def to_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "time": self.time,
            "stop_time": self.stop_time,
            "experiment_id": self.experiment_id,
            "plan_name": self.plan_name,
            "submitter": self.submitter,
            "lab": self.lab,
            "scan_id": self.scan_id,
            "status": self.status,
            "reason": self.reason,
            "num_events": self.num_events,
            "content_hash": self.content_hash,
            "sample_ids": list(self.sample_ids),
        }


@dataclass
class EventTable:
    """A stream's events as columns: ``seq_num``, ``time`` and one array per data key.

    Array-valued data (a spectrum per event) becomes a 2-D array, one row per event.
    """

    stream: str
    data_keys: dict[str, dict[str, Any]]
    seq_num: np.ndarray
    time: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    configuration: dict[str, dict[str, Any]] = field(default_factory=dict)
    hints: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.seq_num)

    def scalar_columns(self) -> list[str]:
        """Names of the columns holding one number (or string) per event."""
        return [k for k, v in self.columns.items() if v.ndim == 1]

    def array_columns(self) -> list[str]:
        """Names of the columns holding an array (e.g. a spectrum) per event."""
        return [k for k, v in self.columns.items() if v.ndim > 1]


@dataclass(frozen=True)
class Verification:
    """The outcome of :meth:`RunStore.verify`."""

    uid: str
    ok: bool
    expected: str | None
    actual: str
    detail: str


def content_hash(documents: Iterator[tuple[str, bytes]]) -> str:
    """SHA-256 over a run's documents as stored: name and encoded body, in emission order."""
    h = hashlib.sha256()
    for name, body in documents:
        _hash_one(h, name, body)
    return h.hexdigest()


def _hash_one(h: Any, name: str, body: bytes) -> None:
    h.update(name.encode())
    h.update(b"\0")
    h.update(len(body).to_bytes(8, "little"))
    h.update(body)


class RunStore:
    """A single-file store of bluesky runs; subscribe it to a RunEngine.

    >>> store = RunStore(tmp_path / "runs.sqlite")
    >>> RE.subscribe(store)

    ``plots=True`` renders each run's PNG in a background thread when its stop document
    arrives (see :mod:`remotelab.data.plots`); :meth:`wait_plots` waits for them.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        plots: bool = True,
        checkpoint_interval: float = 1.0,
    ):
        if path is None:
            from remotelab.settings import get_settings

            path = get_settings().store_path
        self.path = Path(path)
        if synchronous not in ("NORMAL", "FULL"):
            raise StoreError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.synchronous = synchronous
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the data directory {self.path.parent}: {exc}"
            ) from None
        self._lock = threading.RLock()
        self._local = threading.local()
        self._conn = self._connect()
        with self._lock:
            try:
                self._conn.executescript(SCHEMA)
                # WAL checkpoints (copying the log into the database, with an fsync) happen in
                # a background thread, not on the RunEngine's path
                self._conn.execute("PRAGMA wal_autocheckpoint=0")
            except sqlite3.DatabaseError as exc:
                self._conn.close()
                raise StoreError(f"cannot open the run store {self.path}: {exc}") from None
        self._dirty = threading.Event()
        self._closing = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop,
            args=(checkpoint_interval,),
            name="remotelab-store-checkpoint",
            daemon=True,
        )
        self._checkpointer.start()
        self._run_of: dict[str, str] = {}  # descriptor/resource uid -> run uid
        self._hashes: dict[str, Any] = {}  # open run uid -> running sha256
        self._events: dict[str, int] = {}  # open run uid -> events stored
        self._plot_pool: ThreadPoolExecutor | None = None
        self._plot_futures: list[Future] = []
        self.plots = plots
        self.plot_errors: dict[str, str] = {}

    # -- connections -------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the run store {self.path}: {exc}") from None
        return conn

    def _checkpoint_loop(self, interval: float) -> None:
        conn = self._connect()
        try:
            while not self._closing.wait(interval):
                if self._dirty.is_set():
                    self._dirty.clear()
                    try:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    except sqlite3.Error:
                        log.exception("checkpoint of %s failed", self.path)
        finally:
            conn.close()

    def _reader(self) -> sqlite3.Connection:
        """A connection of this thread for queries (writes keep their own)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    # -- writing -----------------------------------------------------------------------------
    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        """Store one document, committed before returning."""
        body = encode(doc)
        self._dirty.set()
        with self._lock:
            if name == "start":
                self._write_start(doc, body)
                return
            run_uid = self._run_uid_of(name, doc)
            if name == "stop":
                self._write_stop(run_uid, doc, body)
                return
            uid = doc.get("uid") or doc.get("datum_id")
            if not isinstance(uid, str):  # pages carry a list of uids
                uid = None
            if name in ("descriptor", "resource", "stream_resource") and uid:
                self._run_of[uid] = run_uid
            self._conn.execute(
                "INSERT INTO documents(run_uid, name, uid, descriptor, body) VALUES (?,?,?,?,?)",
                (run_uid, name, uid, doc.get("descriptor"), body),
            )
            h = self._hashes.get(run_uid)
            if h is not None:
                _hash_one(h, name, body)
            if name == "event":
                self._events[run_uid] = self._events.get(run_uid, 0) + 1
            elif name == "event_page":
                self._events[run_uid] = self._events.get(run_uid, 0) + len(doc["seq_num"])

    def _write_start(self, doc: dict[str, Any], body: bytes) -> None:
        uid = doc["uid"]
        samples = doc.get("sample_ids") or []
        if isinstance(samples, str):
            samples = [samples]
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            seq = conn.execute(
                "INSERT INTO documents(run_uid, name, uid, body) VALUES (?,?,?,?)",
                (uid, "start", uid, body),
            ).lastrowid
            conn.execute(
                "INSERT INTO runs(uid, time, experiment_id, plan_name, submitter, lab, scan_id,"
                " first_seq) VALUES (?,?,?,?,?,?,?,?)",
                (
                    uid,
                    doc["time"],
                    _text(doc.get("experiment_id")),
                    _text(doc.get("plan_name")),
                    _text(doc.get("submitter")),
                    _text(doc.get("lab")),
                    doc.get("scan_id") if isinstance(doc.get("scan_id"), int) else None,
                    seq,
                ),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO run_samples(run_uid, sample_id) VALUES (?,?)",
                [(uid, str(s)) for s in samples],
            )
            conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK")
            raise StoreError(f"a run with uid {uid} is already stored") from None
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        h = hashlib.sha256()
        _hash_one(h, "start", body)
        self._hashes[uid] = h
        self._events[uid] = 0

    def _write_stop(self, run_uid: str, doc: dict[str, Any], body: bytes) -> None:
        h = self._hashes.pop(run_uid, None)
        events = self._events.pop(run_uid, None)
        conn = self._conn
        if h is None:  # the run was started by another store instance: hash from the file
            h = hashlib.sha256()
            for n, b in self._run_rows(run_uid, "name, body", conn=conn):
                _hash_one(h, n, b)
        _hash_one(h, "stop", body)
        num_events = doc.get("num_events")
        total = sum(num_events.values()) if isinstance(num_events, dict) else events
        conn.execute("BEGIN IMMEDIATE")
        try:
            seq = conn.execute(
                "INSERT INTO documents(run_uid, name, uid, body) VALUES (?,?,?,?)",
                (run_uid, "stop", doc.get("uid"), body),
            ).lastrowid
            conn.execute(
                "UPDATE runs SET stop_time=?, exit_status=?, reason=?, num_events=?,"
                " content_hash=?, last_seq=? WHERE uid=?",
                (
                    doc.get("time"),
                    doc.get("exit_status"),
                    doc.get("reason") or None,
                    total,
                    h.hexdigest(),
                    seq,
                    run_uid,
                ),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        for key in [k for k, v in self._run_of.items() if v == run_uid]:
            del self._run_of[key]
        if self.plots:
            self._schedule_plot(run_uid)

    def _run_uid_of(self, name: str, doc: dict[str, Any]) -> str:
        for link in _RUN_LINKS:
            ref = doc.get(link)
            if not ref:
                continue
            if link == "run_start":
                return ref
            run_uid = self._run_of.get(ref)
            if run_uid is None:
                row = self._conn.execute(
                    "SELECT run_uid FROM documents WHERE uid=? AND name IN "
                    "('descriptor', 'resource', 'stream_resource') LIMIT 1",
                    (ref,),
                ).fetchone()
                if row is not None:
                    run_uid = self._run_of[ref] = row[0]
            if run_uid is not None:
                return run_uid
        if name == "datum" and "datum_id" in doc:
            return self._run_uid_of(name, {"resource": doc["datum_id"].rsplit("/", 1)[0]})
        raise StoreError(f"cannot tell which run this {name} document belongs to")

    def _run_rows(
        self, uid: str, columns: str, where: str = "", *, conn: sqlite3.Connection | None = None
    ) -> Iterator[tuple]:
        """Rows of a run's documents, in order: a range scan of ``seq`` filtered by run."""
        conn = conn or self._reader()
        bounds = conn.execute("SELECT first_seq, last_seq FROM runs WHERE uid=?", (uid,)).fetchone()
        if bounds is None:
            return iter(())
        first, last = bounds
        sql = f"SELECT {columns} FROM documents WHERE seq >= ? AND seq <= ? AND run_uid = ?"
        if where:
            sql += f" AND ({where})"
        # an incomplete run has no last document: scan to the end of the table
        return conn.execute(
            sql + " ORDER BY seq", (first, last if last is not None else 2**62, uid)
        )

    # -- plots -------------------------------------------------------------------------------
    def _schedule_plot(self, run_uid: str) -> None:
        if self._plot_pool is None:
            self._plot_pool = ThreadPoolExecutor(1, thread_name_prefix="remotelab-plots")
        self._plot_futures = [f for f in self._plot_futures if not f.done()]
        self._plot_futures.append(self._plot_pool.submit(self._render_plot, run_uid))

    def _render_plot(self, run_uid: str) -> None:
        from remotelab.data.plots import render_run

        try:
            self.put_plot(run_uid, render_run(self, run_uid))
        except Exception as exc:  # a plot must never break the run store
            log.exception("plot of run %s failed", run_uid)
            self.plot_errors[run_uid] = f"{type(exc).__name__}: {exc}"

    def wait_plots(self, timeout: float | None = 60.0) -> None:
        """Wait until every scheduled plot is rendered and stored."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for fut in list(self._plot_futures):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            fut.result(remaining)

    def put_plot(self, run_uid: str, png: bytes, name: str = "summary") -> None:
        """Store a PNG with a run (replacing one of the same name)."""
        self._reader().execute(
            "INSERT OR REPLACE INTO plots(run_uid, name, created, png) VALUES (?,?,?,?)",
            (run_uid, name, time.time(), png),
        )

    def plot(self, uid: str, name: str = "summary") -> bytes | None:
        """The stored PNG of a run, or None if none was made."""
        uid = self.resolve(uid)
        row = (
            self._reader()
            .execute("SELECT png FROM plots WHERE run_uid=? AND name=?", (uid, name))
            .fetchone()
        )
        return None if row is None else bytes(row[0])

    # -- queries -----------------------------------------------------------------------------
    def resolve(self, uid: str) -> str:
        """The full uid of a run given its uid or a unique prefix of it."""
        conn = self._reader()
        if conn.execute("SELECT 1 FROM runs WHERE uid=?", (uid,)).fetchone():
            return uid
        if len(uid) < MIN_PREFIX:
            raise RunNotFound(
                f"no run {uid!r} in the store {self.path}; a uid prefix needs at least "
                f"{MIN_PREFIX} characters"
            )
        rows = conn.execute(
            "SELECT uid FROM runs WHERE uid >= ? AND uid < ? LIMIT 2", (uid, uid + "\uffff")
        ).fetchall()
        if len(rows) == 1:
            return rows[0][0]
        if len(rows) > 1:
            raise RunNotFound(f"run uid prefix {uid!r} is ambiguous; give more characters")
        raise RunNotFound(f"no run {uid!r} in the store {self.path}")

    def runs(
        self,
        *,
        experiment_id: str | None = None,
        sample_id: str | None = None,
        plan_name: str | None = None,
        submitter: str | None = None,
        lab: str | None = None,
        since: float | datetime | None = None,
        until: float | datetime | None = None,
        complete: bool | None = None,
        limit: int | None = None,
    ) -> list[RunSummary]:
        """Runs matching every given filter, newest first. Times are epoch seconds or datetimes."""
        where: list[str] = []
        args: list[object] = []
        for column, value in (
            ("experiment_id", experiment_id),
            ("plan_name", plan_name),
            ("submitter", submitter),
            ("lab", lab),
        ):
            if value is not None:
                where.append(f"r.{column} = ?")
                args.append(value)
        if sample_id is not None:
            where.append("r.uid IN (SELECT run_uid FROM run_samples WHERE sample_id = ?)")
            args.append(sample_id)
        if since is not None:
            where.append("r.time >= ?")
            args.append(_epoch(since))
        if until is not None:
            where.append("r.time <= ?")
            args.append(_epoch(until))
        if complete is not None:
            where.append("r.exit_status IS NOT NULL" if complete else "r.exit_status IS NULL")
        sql = f"SELECT {_SUMMARY_COLUMNS} FROM runs r"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY r.time DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [self._summary(row) for row in self._reader().execute(sql, args).fetchall()]

    def run(self, uid: str) -> RunSummary:
        """The summary of one run (uid or unique uid prefix)."""
        uid = self.resolve(uid)
        row = (
            self._reader()
            .execute(f"SELECT {_SUMMARY_COLUMNS} FROM runs r WHERE uid=?", (uid,))
            .fetchone()
        )
        return self._summary(row)

    def _summary(self, row: tuple) -> RunSummary:
        conn = self._reader()
        uid = row[0]
        samples = tuple(
            s for (s,) in conn.execute("SELECT sample_id FROM run_samples WHERE run_uid=?", (uid,))
        )
        started, stop_time, experiment_id, plan_name, submitter, lab, scan_id = row[1:8]
        exit_status, reason, num_events, content_hash = row[8:12]
        if num_events is None:  # incomplete (or still running): count what is stored
            num_events = self._count_events(uid)
        return RunSummary(
            uid,
            started,
            stop_time,
            experiment_id,
            plan_name,
            submitter,
            lab,
            scan_id,
            exit_status,
            reason,
            num_events,
            content_hash,
            samples,
        )

    def _count_events(self, uid: str) -> int:
        total = 0
        for name, body in self._run_rows(
            uid,
            "name, CASE WHEN name='event_page' THEN body END",
            "name IN ('event', 'event_page')",
        ):
            total += 1 if name == "event" else len(decode(body)["seq_num"])
        return total

    def documents(self, uid: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """A run's documents ``(name, doc)`` in the order they were emitted."""
        for name, body in self._raw_documents(self.resolve(uid)):
            yield name, decode(body)

    def _raw_documents(self, uid: str) -> Iterator[tuple[str, bytes]]:
        for name, body in self._run_rows(uid, "name, body"):
            yield name, bytes(body)

    def start_doc(self, uid: str) -> dict[str, Any]:
        """A run's start document."""
        return next(self.documents(uid))[1]

    def stop_doc(self, uid: str) -> dict[str, Any] | None:
        """A run's stop document, or None for an incomplete run."""
        uid = self.resolve(uid)
        row = (
            self._reader()
            .execute(
                "SELECT d.body FROM runs r JOIN documents d ON d.seq = r.last_seq WHERE r.uid=?",
                (uid,),
            )
            .fetchone()
        )
        return None if row is None else decode(row[0])

    def descriptors(self, uid: str) -> list[dict[str, Any]]:
        """A run's event descriptors, in order."""
        uid = self.resolve(uid)
        rows = self._run_rows(uid, "body", "name = 'descriptor'")
        return [decode(b) for (b,) in rows]

    def streams(self, uid: str) -> list[str]:
        """The names of a run's event streams (``primary`` first when present)."""
        names = list(dict.fromkeys(d.get("name", "primary") for d in self.descriptors(uid)))
        return sorted(names, key=lambda n: n != "primary")

    def table(self, uid: str, stream: str = "primary") -> EventTable:
        """A stream's events as an :class:`EventTable`, ordered by ``seq_num``."""
        uid = self.resolve(uid)
        descriptors = [d for d in self.descriptors(uid) if d.get("name", "primary") == stream]
        if not descriptors:
            known = ", ".join(self.streams(uid)) or "none"
            raise StoreError(f"run {uid} has no stream {stream!r}; its streams: {known}")
        data_keys: dict[str, dict[str, Any]] = {}
        configuration: dict[str, dict[str, Any]] = {}
        hints: dict[str, dict[str, Any]] = {}
        for d in descriptors:
            data_keys.update(d["data_keys"])
            hints.update(d.get("hints") or {})
            for obj, conf in d.get("configuration", {}).items():
                configuration[obj] = conf
        events: list[dict[str, Any]] = []
        wanted = {d["uid"] for d in descriptors}
        rows = self._run_rows(uid, "name, descriptor, body", "name IN ('event', 'event_page')")
        for name, descriptor, body in rows:
            if descriptor not in wanted:
                continue
            doc = decode(body)
            if name == "event":
                events.append(doc)
            else:
                events.extend(unpack_event_page(doc))
        events.sort(key=lambda e: e["seq_num"])
        columns = {
            key: _stack([e["data"].get(key) for e in events], data_keys[key]) for key in data_keys
        }
        return EventTable(
            stream=stream,
            data_keys=data_keys,
            seq_num=np.array([e["seq_num"] for e in events], dtype=int),
            time=np.array([e["time"] for e in events], dtype=float),
            columns=columns,
            configuration=configuration,
            hints=hints,
        )

    # -- integrity ---------------------------------------------------------------------------
    def verify(self, uid: str) -> Verification:
        """Recompute a run's content hash from its stored documents and compare."""
        uid = self.resolve(uid)
        row = self._reader().execute("SELECT content_hash FROM runs WHERE uid=?", (uid,)).fetchone()
        expected = row[0]
        actual = content_hash(self._raw_documents(uid))
        if expected is None:
            return Verification(uid, False, None, actual, "incomplete run: no hash was recorded")
        if expected == actual:
            return Verification(uid, True, expected, actual, "documents match the recorded hash")
        return Verification(
            uid, False, expected, actual, "documents do NOT match the recorded hash"
        )

    # -- life --------------------------------------------------------------------------------
    def close(self, timeout: float | None = 60.0) -> None:
        """Finish pending plots and close the database."""
        if self._plot_pool is not None:
            try:
                self.wait_plots(timeout)
            finally:
                self._plot_pool.shutdown(wait=True)
                self._plot_pool = None
        self._closing.set()
        self._checkpointer.join()
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                log.warning("final checkpoint of %s failed; the log is kept", self.path)
            self._conn.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _epoch(value: float | datetime) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _stack(values: list[Any], key: dict[str, Any]) -> np.ndarray:
    if key.get("dtype") == "array" or any(isinstance(v, np.ndarray | list) for v in values):
        arrays = [np.asarray(v, dtype=float) if v is not None else None for v in values]
        shapes = {a.shape for a in arrays if a is not None}
        if len(shapes) == 1:
            shape = shapes.pop()
            return np.stack([a if a is not None else np.full(shape, np.nan) for a in arrays])
        return np.array(arrays, dtype=object)
    if key.get("dtype") == "string":
        return np.array(["" if v is None else str(v) for v in values], dtype=object)
    if key.get("dtype") in ("integer", "boolean") and None not in values:
        return np.array(values)
    return np.array([np.nan if v is None else v for v in values], dtype=float)


class TiledSink:
    """Send documents to a Tiled server through bluesky's ``TiledWriter``.

    Needs the optional ``tiled`` extra (``pip install 'remotelab[tiled]'``) and a running
    Tiled server; remotelab's own :class:`RunStore` needs neither.
    """

    def __init__(self, uri: str, *, api_key: str | None = None, batch_size: int = 1):
        try:
            from bluesky.callbacks.tiled_writer import TiledWriter
        except ImportError as exc:
            raise StoreError(
                "sending documents to Tiled needs the 'tiled' package: "
                "pip install 'remotelab[tiled]'"
            ) from exc
        self.uri = uri
        self._writer = TiledWriter.from_uri(uri, api_key=api_key, batch_size=batch_size)

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        self._writer(name, doc)

    def close(self) -> None:
        """Nothing to release: TiledWriter writes each run as it goes."""


class Fanout:
    """One callback that hands each document to several sinks, in order."""

    def __init__(self, *sinks: Callable[[str, dict[str, Any]], Any]):
        self.sinks = list(sinks)

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink(name, doc)

    def close(self) -> None:
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                close()


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
