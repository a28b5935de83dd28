"""What the run store hands back, and the hash that seals a run.

:class:`RunSummary` (one row of a run query), :class:`EventTable` (a stream's events as
columns), :class:`Verification` (the verdict of :meth:`RunStore.verify`), and
:func:`content_hash`, the SHA-256 recorded with each run when its stop document arrives, and
:func:`record_hash`, the SHA-256 of the run's own row (lab, submitter, plan, counts, exit
status, its documents' hash) and its samples, recorded with it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
    #: every problem found, in words (empty: none)
    problems: list[str] = field(default_factory=list)


#: the columns of a run's row that :func:`record_hash` covers
RECORD_COLUMNS = (
    "uid",
    "time",
    "stop_time",
    "experiment_id",
    "plan_name",
    "submitter",
    "lab",
    "scan_id",
    "exit_status",
    "reason",
    "num_events",
    "content_hash",
    "first_seq",
    "last_seq",
)


def record_hash(row: Iterable[Any], samples: Iterable[str]) -> str:
    """SHA-256 over a run's row (the values of :data:`RECORD_COLUMNS`, in that order) and
    its sample ids, as canonical JSON."""
    record = dict(zip(RECORD_COLUMNS, row, strict=True))
    record["samples"] = sorted(samples)
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def content_hash(documents: Iterable[tuple[str, bytes]]) -> str:
    """SHA-256 over a run's documents as stored: name and encoded body, in emission order."""
    h = hashlib.sha256()
    for name, body in documents:
        hash_document(h, name, body)
    return h.hexdigest()


def hash_document(h: Any, name: str, body: bytes) -> None:
    """Add one stored document to a running :func:`content_hash` (a ``hashlib`` object)."""
    h.update(name.encode())
    h.update(b"\0")
    h.update(len(body).to_bytes(8, "little"))
    h.update(body)


__all__ = [
    "RECORD_COLUMNS",
    "EventTable",
    "RunSummary",
    "Verification",
    "content_hash",
    "hash_document",
    "record_hash",
]
