"""The run store's SQLite file: its schema, how a connection to it is opened, and how one
run's documents are read back in order.

Runs live in ``runs`` (one row each, filled from the start document and completed by the
stop document), their samples in ``run_samples``, every document in ``documents`` in
emission order, and rendered PNGs in ``plots``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from remotelab.errors import StoreError

#: ``PRAGMA synchronous`` levels the store accepts
Synchronous = Literal["NORMAL", "FULL"]

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
    last_seq INTEGER,
    record_hash TEXT,
    seal TEXT
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

#: the columns of ``runs r`` a :class:`~remotelab.data.models.RunSummary` is made from
SUMMARY_COLUMNS = (
    "r.uid, r.time, r.stop_time, r.experiment_id, r.plan_name, r.submitter, r.lab, r.scan_id,"
    " r.exit_status, r.reason, r.num_events, r.content_hash"
)


def connect(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    """A connection in autocommit and WAL mode, usable from any thread."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open the run store {path}: {exc}") from None
    return conn


def add_record_hash(conn: sqlite3.Connection) -> None:
    """Give a run table from before record hashes (and seals) their columns (its runs stay
    without them)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    for column in ("record_hash", "seal"):
        if column not in have:
            conn.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT")


def run_record(conn: sqlite3.Connection, uid: str) -> tuple[tuple, list[str]] | None:
    """A run's row (:data:`~remotelab.data.models.RECORD_COLUMNS`) and its sample ids."""
    from remotelab.data.models import RECORD_COLUMNS

    row = conn.execute(f"SELECT {', '.join(RECORD_COLUMNS)} FROM runs WHERE uid=?", (uid,))
    found = row.fetchone()
    if found is None:
        return None
    samples = [
        r[0] for r in conn.execute("SELECT sample_id FROM run_samples WHERE run_uid=?", (uid,))
    ]
    return tuple(found), samples


def run_rows(conn: sqlite3.Connection, uid: str, columns: str, where: str = "") -> Iterator[tuple]:
    """Rows of a run's documents, in order: a range scan of ``seq`` filtered by run."""
    bounds = conn.execute("SELECT first_seq, last_seq FROM runs WHERE uid=?", (uid,)).fetchone()
    if bounds is None:
        return iter(())
    first, last = bounds
    sql = f"SELECT {columns} FROM documents WHERE seq >= ? AND seq <= ? AND run_uid = ?"
    if where:
        sql += f" AND ({where})"
    # an incomplete run has no last document: scan to the end of the table
    return conn.execute(sql + " ORDER BY seq", (first, last if last is not None else 2**62, uid))


__all__ = [
    "SCHEMA",
    "SUMMARY_COLUMNS",
    "Synchronous",
    "add_record_hash",
    "connect",
    "run_record",
    "run_rows",
]
