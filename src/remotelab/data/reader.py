"""The read side of the run store: queries over runs, their documents, tables and hashes.

:class:`RunReader` is the query half of :class:`~remotelab.data.store.RunStore`: each
thread reads through a connection of its own, so queries never wait on the writer.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from event_model import unpack_event_page

from remotelab.data.codec import decode
from remotelab.data.database import SUMMARY_COLUMNS, Synchronous, connect, run_record, run_rows
from remotelab.data.models import (
    EventTable,
    RunSummary,
    Verification,
    content_hash,
    record_hash,
)
from remotelab.errors import RunNotFound, StoreError
from remotelab.keys.seal import check_seal, load_seal_key

#: the fewest characters of a run uid that :meth:`RunReader.resolve` accepts as a prefix
MIN_PREFIX = 4


class RunReader:
    """Queries on the store at ``path``: runs, one run, its documents, tables, plots, hashes."""

    def __init__(self, path: Path, synchronous: Synchronous = "NORMAL"):
        self.path, self.synchronous = path, synchronous
        self._local = threading.local()
        #: the run seal key (:mod:`remotelab.keys.seal`), read from the keys directory at
        #: the first check if not given
        self.seal_key: bytes | None = None

    def _reader(self) -> sqlite3.Connection:
        """A connection of this thread for queries (writes keep their own)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path, self.synchronous)
        return conn

    def _close_reader(self) -> None:
        """Close this thread's query connection, if it opened one."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _run_rows(self, uid: str, columns: str, where: str = "") -> Iterator[tuple]:
        return run_rows(self._reader(), uid, columns, where)

    # -- runs --------------------------------------------------------------------------------
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

    def starting_with(self, prefix: str, limit: int = 100) -> list[str]:
        """The uids of the stored runs that start with ``prefix`` (at most ``limit``)."""
        rows = self._reader().execute(
            "SELECT uid FROM runs WHERE uid >= ? AND uid < ? ORDER BY uid LIMIT ?",
            (prefix, prefix + "\uffff", limit),
        )
        return [uid for (uid,) in rows.fetchall()]

    def resolve_experiment(self, experiment_id: str) -> str:
        """The experiment id the store's runs know, given it or a unique prefix of it (at
        least :data:`MIN_PREFIX` characters); as given if none of them starts so."""
        conn = self._reader()
        exact = conn.execute("SELECT 1 FROM runs WHERE experiment_id=? LIMIT 1", (experiment_id,))
        if exact.fetchone() or len(experiment_id) < MIN_PREFIX:
            return experiment_id
        rows = conn.execute(
            "SELECT DISTINCT experiment_id FROM runs WHERE experiment_id >= ? AND experiment_id < ?"
            " LIMIT 2",
            (experiment_id, experiment_id + "\uffff"),
        ).fetchall()
        if len(rows) > 1:
            raise RunNotFound(
                f"experiment id prefix {experiment_id!r} is ambiguous; give more characters"
            )
        return rows[0][0] if rows else experiment_id

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
        """Runs matching every given filter, newest first. Times are epoch seconds or datetimes;
        ``experiment_id`` may be a unique prefix (:meth:`resolve_experiment`)."""
        if experiment_id is not None:
            experiment_id = self.resolve_experiment(experiment_id)
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
        sql = f"SELECT {SUMMARY_COLUMNS} FROM runs r"
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
            .execute(f"SELECT {SUMMARY_COLUMNS} FROM runs r WHERE uid=?", (uid,))
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

    # -- documents ---------------------------------------------------------------------------
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

    def plot(self, uid: str, name: str = "summary") -> bytes | None:
        """The stored PNG of a run, or None if none was made."""
        uid = self.resolve(uid)
        row = (
            self._reader()
            .execute("SELECT png FROM plots WHERE run_uid=? AND name=?", (uid, name))
            .fetchone()
        )
        return None if row is None else bytes(row[0])

    # -- integrity ---------------------------------------------------------------------------
    def verify(self, uid: str) -> Verification:
        """Check a run end to end: its documents against the hash recorded at its stop, its
        row (lab, submitter, plan, counts, exit status) and samples against their record
        hash, and no document of the run outside its range of the store."""
        uid = self.resolve(uid)
        conn = self._reader()
        expected, first, last = conn.execute(
            "SELECT content_hash, first_seq, last_seq FROM runs WHERE uid=?", (uid,)
        ).fetchone()
        actual = content_hash(self._raw_documents(uid))
        if expected is None:
            return Verification(uid, False, None, actual, "incomplete run: no hash was recorded")
        problems = []
        if expected != actual:
            problems.append("documents do NOT match the recorded hash")
        stray = conn.execute(
            "SELECT COUNT(*) FROM documents WHERE run_uid=? AND (seq < ? OR seq > ?)",
            (uid, first, last),
        ).fetchone()[0]
        if stray:
            problems.append(f"{stray} document(s) of this run lie outside its range (added later)")
        sealed, stamp = _record_hash_of(conn, uid)
        record = run_record(conn, uid)
        if sealed and record is not None and record_hash(*record) != sealed:
            problems.append(
                "the run's record (lab, submitter, plan, counts, exit status, samples) does NOT "
                "match its hash"
            )
        sealing = self._check_seal(sealed, stamp) if sealed else None
        if sealing is False:
            problems.append(
                "the run's seal does NOT match its hashes: its data and hashes were rewritten "
                "together"
            )
        if problems:
            return Verification(uid, False, expected, actual, "; ".join(problems), problems)
        detail = "documents match the recorded hash"
        detail += "; its record matches its hash" if sealed else " (its record has no hash)"
        if sealing:
            detail += "; its seal matches"
        elif sealed and stamp:
            kid = stamp.partition(":")[0]
            detail += f" (sealed with key {kid}, which this machine lacks: seal not checked)"
        return Verification(uid, True, expected, actual, detail)

    def _check_seal(self, sealed: str, stamp: str | None) -> bool | None:
        """Whether the run's seal matches (None: it has none, or one this machine cannot
        check)."""
        if not stamp:
            return None
        if self.seal_key is None:
            with contextlib.suppress(OSError, ValueError):
                self.seal_key = load_seal_key()
        return check_seal(self.seal_key, sealed, stamp)


def _record_hash_of(conn: sqlite3.Connection, uid: str) -> tuple[str | None, str | None]:
    """A run's record hash and seal (None where the run, or the store, has none)."""
    try:
        row = conn.execute("SELECT record_hash, seal FROM runs WHERE uid=?", (uid,)).fetchone()
    except sqlite3.OperationalError:  # a store from before record hashes, opened read-only
        with contextlib.suppress(sqlite3.OperationalError):
            row = conn.execute("SELECT record_hash FROM runs WHERE uid=?", (uid,)).fetchone()
            return (row[0] if row else None), None
        return None, None
    return (row[0], row[1]) if row else (None, None)


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


__all__ = ["MIN_PREFIX", "RunReader"]
