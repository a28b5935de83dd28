"""The write side of the run store: each document committed before the callback returns.

:class:`RunWriter` owns the one write connection. A start document opens a run row, a stop
document closes it with its event count and content hash, every other document is linked
to its run (through ``run_start``, its descriptor or its resource) and appended. WAL
checkpoints run in a background thread, off the RunEngine's path.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from remotelab.data.codec import encode
from remotelab.data.database import (
    SCHEMA,
    Synchronous,
    add_record_hash,
    connect,
    run_record,
    run_rows,
)
from remotelab.data.models import hash_document, record_hash
from remotelab.errors import StoreError, StoreWriteError
from remotelab.keys.seal import seal

log = logging.getLogger("remotelab.data.store")

#: the document fields that tie a document to its run, in the order they are tried
RUN_LINKS = ("run_start", "descriptor", "resource", "stream_resource")


class RunWriter:
    """A bluesky callback writing each document to the store at ``path`` as it comes.

    ``on_stop(run_uid)`` is called once a run's stop document is committed.
    """

    def __init__(
        self,
        path: Path,
        synchronous: Synchronous,
        *,
        checkpoint_interval: float = 1.0,
        on_stop: Callable[[str], None] | None = None,
        seal_key: bytes | None = None,
    ):
        self.path, self.synchronous, self.on_stop = path, synchronous, on_stop
        self.seal_key = seal_key
        self._lock = threading.RLock()
        self._conn = connect(path, synchronous)
        with self._lock:
            try:
                self._conn.executescript(SCHEMA)
                add_record_hash(self._conn)
                # WAL checkpoints (copying the log into the database, with an fsync) happen in
                # a background thread, not on the RunEngine's path
                self._conn.execute("PRAGMA wal_autocheckpoint=0")
            except sqlite3.DatabaseError as exc:
                self._conn.close()
                raise StoreError(f"cannot open the run store {path}: {exc}") from None
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

    def _checkpoint_loop(self, interval: float) -> None:
        conn = connect(self.path, self.synchronous)
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

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        """Store one document, committed before returning; :class:`StoreWriteError` (with
        ``full`` set when the disk is full) if it could not be written."""
        body = encode(doc)
        self._dirty.set()
        try:
            self._store(name, doc, body)
        except (sqlite3.OperationalError, OSError) as exc:
            raise StoreWriteError(name, self.path.name, exc) from exc

    def _store(self, name: str, doc: dict[str, Any], body: bytes) -> None:
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
                hash_document(h, name, body)
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
            _rollback(conn)
            raise StoreError(f"a run with uid {uid} is already stored") from None
        except BaseException:
            _rollback(conn)
            raise
        h = hashlib.sha256()
        hash_document(h, "start", body)
        self._hashes[uid] = h
        self._events[uid] = 0

    def _write_stop(self, run_uid: str, doc: dict[str, Any], body: bytes) -> None:
        h = self._hashes.pop(run_uid, None)
        events = self._events.pop(run_uid, None)
        conn = self._conn
        if h is None:  # the run was started by another store instance: hash from the file
            h = hashlib.sha256()
            for n, b in run_rows(conn, run_uid, "name, body"):
                hash_document(h, n, b)
        hash_document(h, "stop", body)
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
            record = run_record(conn, run_uid)
            if record is not None:  # the row and its samples sealed as they now stand
                hashed = record_hash(*record)
                sealed = seal(self.seal_key, hashed) if self.seal_key else None
                conn.execute(
                    "UPDATE runs SET record_hash=?, seal=? WHERE uid=?", (hashed, sealed, run_uid)
                )
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        for key in [k for k, v in self._run_of.items() if v == run_uid]:
            del self._run_of[key]
        if self.on_stop is not None:
            self.on_stop(run_uid)

    def _run_uid_of(self, name: str, doc: dict[str, Any]) -> str:
        for link in RUN_LINKS:
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

    def close(self) -> None:
        """Stop the checkpoint thread, fold the log into the database and close it."""
        self._closing.set()
        self._checkpointer.join()
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                log.warning("final checkpoint of %s failed; the log is kept", self.path)
            self._conn.close()


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back, if SQLite has not already (it does on a full disk): the error that made
    the write fail is the one to report, not "no transaction is active"."""
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


__all__ = ["RUN_LINKS", "RunWriter"]
