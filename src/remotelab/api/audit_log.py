"""The audit log's half of the gateway's user database: appending chained rows, reading them
back with filters, the head of the chain and its verification (:mod:`remotelab.api.audit_chain`).

:class:`AuditLog` is mixed into :class:`remotelab.api.auth.AuthStore`, whose SQLite
connection (``_conn``), lock (``_lock``) and query helper (``_q``) it uses.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from remotelab.api.audit_chain import (
    CONTENT,
    GENESIS,
    MAX_DETAIL_CHARS,
    ChainReport,
    bounded_detail,
    row_hash,
    verify_rows,
)


class AuditEntry(BaseModel):
    """One recorded action: who, what, on what, when, from where, and how it ended."""

    seq: int
    time: float
    actor: str
    role: str
    action: str
    target: str = ""
    lab: str = ""
    client: str = ""
    status: int = Field(description="HTTP status the action ended with")
    detail: dict[str, Any] = Field(default_factory=dict)
    hash: str = Field("", description="the row's hash in the audit chain (empty: before it)")


def add_chain_columns(conn: sqlite3.Connection) -> None:
    """Give an audit table from before the hash chain its two columns (its rows stay
    unchained; new rows chain after them)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(audit)")}
    for column in ("prev_hash", "hash"):
        if column not in columns:
            conn.execute(f"ALTER TABLE audit ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")


def _detail(text: str) -> dict[str, Any]:
    """A stored detail read back; a row that is not a JSON object reads as its text."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return {"unreadable": text[:MAX_DETAIL_CHARS]}
    return value if isinstance(value, dict) else {"value": value}


class AuditLog:
    """The audit-log methods of the user database."""

    # the store's connection, lock and query helper
    _conn: sqlite3.Connection
    _lock: threading.RLock
    _q: Callable[..., list[tuple]]

    def record(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        status: int,
        target: str = "",
        lab: str = "",
        client: str = "",
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append one entry to the audit log, chained to the one before it (its detail
        bounded: :func:`~remotelab.api.audit_chain.bounded_detail`)."""
        text = bounded_detail(detail)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")  # one writer links at a time, across processes
            try:
                last = self._conn.execute(
                    "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                seq = (last[0] if last else 0) + 1
                prev = (last[1] if last else "") or GENESIS
                content = dict(
                    seq=seq,
                    time=time.time(),
                    actor=actor,
                    role=role,
                    action=action,
                    target=target,
                    lab=lab,
                    client=client,
                    status=int(status),
                    detail=text,
                )
                self._conn.execute(
                    f"INSERT INTO audit ({', '.join(CONTENT)}, prev_hash, hash) "
                    f"VALUES ({', '.join('?' * (len(CONTENT) + 2))})",
                    (*(content[key] for key in CONTENT), prev, row_hash(prev, content)),
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def audit_head(self) -> str:
        """The hash of the newest row of the audit log (empty if none is chained)."""
        rows = self._q("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1")
        return str(rows[0][0]) if rows else ""

    def verify_audit(self, *, expect_head: str | None = None) -> ChainReport:
        """Walk the audit log's hash chain: the first row changed, deleted or out of order."""
        with self._lock:
            cursor = self._conn.cursor()
            cursor.execute(f"SELECT {', '.join(CONTENT)}, prev_hash, hash FROM audit ORDER BY seq")
            return verify_rows(cursor, expect_head=expect_head)

    def audit(
        self,
        *,
        lab: str | None = None,
        labs: tuple[str, ...] | None = None,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditEntry]:
        """Audit entries matching every given filter, newest first.

        ``labs`` limits the result to entries on those labs (and entries on no lab).
        """
        where: list[str] = []
        args: list[str | float | int] = []
        filters = (("lab", lab), ("actor", actor), ("action", action), ("target", target))
        for column, value in filters:
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        if labs:
            where.append(f"lab IN ({','.join('?' * (len(labs) + 1))})")
            args.extend([*labs, ""])
        if since is not None:
            where.append("time>=?")
            args.append(since)
        sql = (
            "SELECT seq, time, actor, role, action, target, lab, client, status, detail, hash "
            "FROM audit"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ? OFFSET ?"
        args.extend([int(limit), int(offset)])
        return [
            AuditEntry(
                seq=r[0],
                time=r[1],
                actor=r[2],
                role=r[3],
                action=r[4],
                target=r[5],
                lab=r[6],
                client=r[7],
                status=r[8],
                detail=_detail(r[9]),
                hash=r[10],
            )
            for r in self._q(sql, tuple(args))
        ]


__all__ = ["AuditEntry", "AuditLog", "add_chain_columns"]
