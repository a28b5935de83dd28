"""The audit log's hash chain and the bounds on what one entry may hold.

Each row of the audit log carries ``prev_hash`` (the hash of the row before it) and
``hash``: SHA-256 of ``prev_hash`` followed by the row's canonical content (every column
but the two hashes, as JSON with sorted keys). Changing a row breaks its own hash; deleting
or reordering rows breaks the link of the row after them; deleting the newest rows is seen
against a head hash recorded elsewhere (each run's provenance carries the head at the time
its experiment was accepted). :func:`verify_rows` walks the chain and names the first row
that does not hold.

Rows written before the chain existed (``hash`` empty) may only precede the chained ones;
they are counted as unchained.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

#: the ``prev_hash`` of the first chained row
GENESIS = "0" * 64
#: the columns a row's hash covers, in the order the store reads them
CONTENT = ("seq", "time", "actor", "role", "action", "target", "lab", "client", "status", "detail")
#: an entry's detail is kept to this many characters of JSON (a summary beyond)
MAX_DETAIL_CHARS = 8192
#: nesting in a detail deeper than this is replaced by a marker
MAX_DETAIL_DEPTH = 8


def row_hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    """The hash of one row: ``prev_hash`` chained with the row's canonical content."""
    canonical = json.dumps(
        {key: content[key] for key in CONTENT},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=True,
    )
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def _shallow(value: Any, depth: int) -> Any:
    if isinstance(value, Mapping):
        if depth >= MAX_DETAIL_DEPTH:
            return f"<{len(value)} keys nested too deep>"
        return {str(k): _shallow(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if depth >= MAX_DETAIL_DEPTH:
            return f"<{len(value)} items nested too deep>"
        return [_shallow(v, depth + 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def bounded_detail(detail: Mapping[str, Any] | None) -> str:
    """``detail`` as the JSON an audit row stores: nesting cut at :data:`MAX_DETAIL_DEPTH`,
    non-finite numbers as text, and at most :data:`MAX_DETAIL_CHARS` characters (a longer
    detail is kept as its beginning, marked truncated, with its full size)."""
    text = json.dumps(_shallow(dict(detail or {}), 0), allow_nan=False)
    if len(text) <= MAX_DETAIL_CHARS:
        return text
    return json.dumps(
        {"truncated": True, "size": len(text), "start": text[: MAX_DETAIL_CHARS - 200]}
    )


class ChainReport(BaseModel):
    """What :func:`verify_rows` found in the audit log."""

    ok: bool = Field(description="every chained row holds and links to the one before it")
    rows: int = Field(description="rows read")
    unchained: int = Field(0, description="rows from before the chain (no hash), all first")
    head: str = Field("", description="the hash of the newest row (empty: no chained row)")
    first_bad: int | None = Field(None, description="the seq of the first row that fails")
    problem: str = Field("", description="what is wrong with it, in words")
    head_found: bool | None = Field(
        None, description="whether the head hash asked about is a row of the chain"
    )


def _link_problem(
    seq: int, prev_hash: str, expected_prev: str, last_seq: int, chained: bool
) -> str:
    """Why a row whose own hash holds does not link to the row before it ('' if it does)."""
    if prev_hash == expected_prev:
        return ""
    if chained and seq != last_seq + 1:
        gone = f"{last_seq + 1}" if seq == last_seq + 2 else f"{last_seq + 1}–{seq - 1}"
        return f"row(s) {gone} before row {seq} were deleted"
    if not chained and prev_hash != GENESIS:
        return f"the rows before row {seq} were deleted (it links to a row not there)"
    return f"row {seq} is out of order: it does not link to the row before it"


def verify_rows(rows: Iterable[Sequence[Any]], *, expect_head: str | None = None) -> ChainReport:
    """Walk rows ``(*CONTENT, prev_hash, hash)`` in ``seq`` order and check the chain.

    ``expect_head``: a head hash recorded earlier (a run's ``audit_head``); the report says
    whether it is still a row of the chain (if not, rows were deleted or rewritten since).
    """
    report = ChainReport(ok=True, rows=0, head_found=False if expect_head else None)
    expected_prev, last_seq = GENESIS, 0
    for row in rows:
        report.rows += 1
        content = dict(zip(CONTENT, row[: len(CONTENT)], strict=True))
        prev_hash, own = str(row[len(CONTENT)] or ""), str(row[len(CONTENT) + 1] or "")
        seq = int(content["seq"])
        if not own:
            problem = f"row {seq} has lost its hash (rewritten after the chain began)"
            if not report.head:
                report.unchained, last_seq = report.unchained + 1, seq
                continue
        elif row_hash(prev_hash, content) != own:
            problem = f"row {seq} was changed: its content does not match its hash"
        else:
            problem = _link_problem(seq, prev_hash, expected_prev, last_seq, bool(report.head))
        if problem:
            report.ok, report.first_bad, report.problem = False, seq, problem
            return report
        expected_prev, last_seq, report.head = own, seq, own
        if expect_head and own == expect_head:
            report.head_found = True
    return report


__all__ = [
    "CONTENT",
    "GENESIS",
    "MAX_DETAIL_CHARS",
    "MAX_DETAIL_DEPTH",
    "ChainReport",
    "bounded_detail",
    "row_hash",
    "verify_rows",
]
