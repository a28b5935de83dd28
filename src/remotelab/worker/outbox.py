"""The worker's outbox: what it must tell Prefect, kept on disk until Prefect has it.

Everything a worker records after an experiment — its final state, its labels, the summary
artifact and the failure logs — is first committed to a SQLite file on the worker's side,
then delivered from there in order (per experiment: the state first). A record survives
SIGTERM, SIGKILL and outages of any length: delivery retries with a capped back-off for ever
while Prefect cannot be reached (:class:`~remotelab.worker.link.Link`), and a worker started
after one that died delivers the dead worker's records (same lab, same Prefect) before it
marks anything crashed. A record Prefect *refuses* (the run is gone, a 4xx) is tried
:data:`MAX_REFUSALS` times and then kept as undeliverable, with the reason, for a person.

Each kind of record has a handler (``kind → handler(payload)``) given by its owner
(:class:`~remotelab.worker.records.Recorder`); payloads are JSON.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remotelab.settings import private_dir, private_file
from remotelab.worker.link import Link

log = logging.getLogger("remotelab.worker")

#: times a record Prefect refuses (not one it could not be sent) is tried before it is set aside
MAX_REFUSALS = 5
#: how many recent delivery lags (s) are kept for :meth:`Outbox.lag_stats`
LAG_WINDOW = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,
    owner TEXT NOT NULL,
    pid INTEGER NOT NULL,
    experiment TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL,
    due REAL NOT NULL,
    refusals INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    undeliverable INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (scope, owner, undeliverable, seq);
"""


@dataclass(frozen=True)
class Record:
    """One record waiting in the outbox."""

    seq: int
    experiment: str
    kind: str
    payload: dict[str, Any]
    created: float
    refusals: int = 0
    error: str | None = None


Handler = Callable[[dict[str, Any]], Any]


class Outbox:
    """Records of worker ``owner`` for ``scope`` (the lab on one Prefect), in ``path``.

    ``path`` None keeps them in memory only: they survive outages but not the process (for
    tests and embedded uses that keep no data). ``link`` hears whether Prefect was reached.
    """

    def __init__(
        self,
        path: str | Path | None,
        *,
        owner: str,
        handlers: Mapping[str, Handler],
        link: Link,
        scope: str = "",
    ):
        self.path = Path(path) if path is not None else None
        self.owner = owner
        self.scope = scope
        self.handlers = dict(handlers)
        self.link = link
        if self.path is not None:
            private_dir(self.path.parent)
            private_file(self.path)
        self._db = sqlite3.connect(
            str(self.path) if self.path else ":memory:", check_same_thread=False, timeout=30
        )
        with self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable against a killed process
            self._db.executescript(SCHEMA)
        self._lock = threading.Lock()  # the connection
        self._delivering = threading.Lock()  # one delivery at a time, in order
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self.lags: deque[float] = deque(maxlen=LAG_WINDOW)
        self.delivered = 0
        self._retry_in = 0.0  # the back-off after the last failed delivery

    # -- writing ---------------------------------------------------------------------------
    def put(
        self, experiment: str, kind: str, payload: dict[str, Any], *, delay: float = 0.0
    ) -> int:
        """Commit a record (delivered ``delay`` s from now at the earliest); its number."""
        if kind not in self.handlers:
            raise ValueError(f"no handler for outbox records of kind {kind!r}")
        now = time.time()
        with self._lock, self._db:
            cur = self._db.execute(
                "INSERT INTO outbox (scope, owner, pid, experiment, kind, payload, created, due)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.scope,
                    self.owner,
                    os.getpid(),
                    experiment,
                    kind,
                    json.dumps(payload),
                    now,
                    now + delay,
                ),
            )
            seq = int(cur.lastrowid or 0)
        self._wake.set()
        return seq

    def adopt(self) -> int:
        """Take over the records of this scope's workers whose process has ended on this
        host (a worker killed before it delivered them), due at once; how many."""
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT owner, pid FROM outbox WHERE scope = ? AND owner != ?",
                (self.scope, self.owner),
            ).fetchall()
        dead = [(owner, pid) for owner, pid in rows if not _process_alive(int(pid))]
        adopted = 0
        for owner, pid in dead:
            with self._lock, self._db:
                cur = self._db.execute(
                    "UPDATE outbox SET owner = ?, pid = ?, due = MIN(due, ?)"
                    " WHERE scope = ? AND owner = ? AND pid = ?",
                    (self.owner, os.getpid(), time.time(), self.scope, owner, pid),
                )
                adopted += cur.rowcount
            log.warning("outbox: took over %d record(s) of ended worker %s", cur.rowcount, owner)
        if adopted:
            self._wake.set()
        return adopted

    def due_now(self, seq: int) -> None:
        """Make record ``seq`` due now (it was put with a delay that no longer applies)."""
        with self._lock, self._db:
            self._db.execute(
                "UPDATE outbox SET due = MIN(due, ?) WHERE seq = ?", (time.time(), seq)
            )
        self._wake.set()

    # -- reading ---------------------------------------------------------------------------
    def pending(self, *, undeliverable: bool = False) -> list[Record]:
        """This worker's records not yet delivered (``undeliverable``: those set aside)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, experiment, kind, payload, created, refusals, error FROM outbox"
                " WHERE scope = ? AND owner = ? AND undeliverable = ? ORDER BY seq",
                (self.scope, self.owner, int(undeliverable)),
            ).fetchall()
        return [Record(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6]) for r in rows]

    def waiting_for(self, experiment: str) -> bool:
        """Whether a record of ``experiment`` still waits to be delivered."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM outbox WHERE scope = ? AND experiment = ? AND undeliverable = 0"
                " LIMIT 1",
                (self.scope, experiment),
            ).fetchone()
        return row is not None

    def lag_stats(self) -> dict[str, float]:
        """Delivery lag (s from commit to delivered) of recent records: p50, p99, max."""
        lags = sorted(self.lags)
        if not lags:
            return {"count": 0, "p50": 0.0, "p99": 0.0, "max": 0.0}

        def at(q: float) -> float:
            return lags[min(len(lags) - 1, int(q * len(lags)))]

        return {"count": len(lags), "p50": at(0.5), "p99": at(0.99), "max": lags[-1]}

    # -- delivering ------------------------------------------------------------------------
    def deliver(self, seq: int) -> bool:
        """Deliver record ``seq`` now if nothing of its experiment is ahead of it (the fast
        path, on the caller's thread); whether it was delivered. If not, it stays for the
        background delivery."""
        with self._delivering:
            record = self._next(seq=seq)
            if record is None or record.seq != seq:
                return False
            return self._send(record)

    def flush(self, timeout: float) -> bool:
        """Deliver every record that is due, for up to ``timeout`` s; whether none is left."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._delivering:
                record = self._next()
                if record is None:
                    return True
                if not self._send(record):
                    return False
        return self._next() is None

    def start(self) -> None:
        """Deliver in the background, for as long as the worker serves."""
        self._thread = threading.Thread(target=self._loop, name="remotelab-outbox", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is waiting (for up to ``timeout`` s, due or not), then stop. What is
        left stays on disk for the next worker of the lab."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        left = len(self.pending())
        if left:
            where = f"kept in {self.path.name}" if self.path else "lost: the outbox is in memory"
            log.warning("outbox: %d record(s) not delivered to Prefect (%s)", left, where)
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                self._db.close()  # (a delivery still blocked in Prefect's client keeps it)

    def _loop(self) -> None:
        while True:
            closing = self._closing.is_set()  # read once: what is due depends on it
            with self._delivering:
                record = self._next(ignore_due=closing)
                sent = self._send(record) if record is not None else False
            if record is not None and sent:
                continue
            if closing and (record is None or not self.link.reachable):
                return
            self._wake.clear()
            self._wake.wait(self._pause(record))

    def _pause(self, record: Record | None) -> float:
        """How long to wait before the next try: the back-off after a failure, else until
        the next record is due (at most 1 s)."""
        if record is not None:
            return self._retry_in
        upcoming = self._next(ignore_due=True)
        return 1.0 if upcoming is None else min(1.0, max(0.0, self._due_of(upcoming) - time.time()))

    def _due_of(self, record: Record) -> float:
        with self._lock:
            row = self._db.execute("SELECT due FROM outbox WHERE seq = ?", (record.seq,)).fetchone()
        return float(row[0]) if row else time.time()

    def _next(self, *, seq: int | None = None, ignore_due: bool = False) -> Record | None:
        """The record to deliver next: the oldest due one (with ``seq``: the oldest of that
        record's experiment)."""
        query = (
            "SELECT seq, experiment, kind, payload, created, refusals, error FROM outbox"
            " WHERE scope = ? AND owner = ? AND undeliverable = 0"
        )
        args: list[Any] = [self.scope, self.owner]
        if seq is not None:
            query += " AND experiment = (SELECT experiment FROM outbox WHERE seq = ?)"
            args.append(seq)
        elif not ignore_due:
            query += " AND due <= ?"
            args.append(time.time())
        with self._lock:
            row = self._db.execute(query + " ORDER BY seq LIMIT 1", args).fetchone()
        if row is None:
            return None
        return Record(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6])

    def _send(self, record: Record) -> bool:
        """Hand a record to its handler; whether it was delivered (or set aside)."""
        try:
            self.handlers[record.kind](record.payload)
        except Exception as exc:
            backoff = self.link.check(exc)
            if backoff is not None:  # not reached: try again after the back-off
                self._retry_in = backoff
                return False
            self.link.ok()
            self._refused(record, exc)
            return True
        self.link.ok()
        with self._lock, self._db:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (record.seq,))
        self.delivered += 1
        self.lags.append(time.time() - record.created)
        return True

    def _refused(self, record: Record, exc: BaseException) -> None:
        refusals = record.refusals + 1
        error = f"{type(exc).__name__}: {exc}"[:2000]
        aside = refusals >= MAX_REFUSALS
        with self._lock, self._db:
            self._db.execute(
                "UPDATE outbox SET refusals = ?, error = ?, undeliverable = ?, due = ?"
                " WHERE seq = ?",
                (refusals, error, int(aside), time.time() + 0.5 * refusals, record.seq),
            )
        if aside:
            log.error(
                "outbox: Prefect refused the %s of experiment %s %d times; kept aside: %s",
                record.kind,
                record.experiment,
                refusals,
                error,
            )
        else:
            log.warning(
                "outbox: Prefect refused the %s of experiment %s: %s",
                record.kind,
                record.experiment,
                error,
            )


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["MAX_REFUSALS", "Outbox", "Record"]
