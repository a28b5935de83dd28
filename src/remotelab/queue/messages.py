"""What remotelab writes on an experiment's flow run for others to read: state names, the
worker tag in state messages, and the run's labels.

Both sides live here: the worker writes with :func:`worker_tag` and :func:`run_labels`; the
queue, the listing and peer workers read with :func:`worker_in_message` and
:func:`read_run_labels`. A run's labels are the structured record (which worker ran it, the
uids of its bluesky runs, its exit status); the worker writes the worker label at its claim
and the rest before the final state, so a reader of a finished run always finds them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

#: state names remotelab gives Prefect states
AWAITING_APPROVAL = "AwaitingApproval"
AWAITING_OPERATOR = "AwaitingOperator"
PAUSED_NAME = "Paused"

#: the labels of an experiment's flow run
WORKER_LABEL = "remotelab.worker"
RUN_UIDS_LABEL = "remotelab.run_uids"
EXIT_STATUS_LABEL = "remotelab.exit_status"

_WORKER_RE = re.compile(r"\[worker ([^\]\s]+)\]")


def worker_tag(worker_id: str) -> str:
    """The tag that starts every state message a worker writes: ``[worker <id>]``."""
    if not worker_id or any(c.isspace() or c == "]" for c in worker_id):
        raise ValueError(f"a worker id has no spaces or ']': {worker_id!r}")
    return f"[worker {worker_id}]"


def worker_in_message(message: str | None) -> str | None:
    """The worker a state message names (see :func:`worker_tag`), or None."""
    m = _WORKER_RE.search(message or "")
    return m.group(1) if m else None


@dataclass(frozen=True)
class RunLabels:
    """What an experiment's labels record."""

    worker: str | None = None
    run_uids: list[str] = field(default_factory=list)
    exit_status: str | None = None


def run_labels(
    worker: str, run_uids: list[str] | None = None, exit_status: str | None = None
) -> dict[str, str]:
    """The labels a worker writes: at its claim (``worker`` only) or when the run ended."""
    labels = {WORKER_LABEL: worker}
    if run_uids is not None:
        labels[RUN_UIDS_LABEL] = ",".join(run_uids)
    if exit_status:
        labels[EXIT_STATUS_LABEL] = exit_status
    return labels


def read_run_labels(labels: dict[str, Any] | None) -> RunLabels:
    """What a flow run's labels record (those remotelab did not write are ignored)."""
    labels = labels or {}
    uids = [u for u in str(labels.get(RUN_UIDS_LABEL) or "").split(",") if u]
    return RunLabels(
        worker=str(labels[WORKER_LABEL]) if labels.get(WORKER_LABEL) else None,
        run_uids=uids,
        exit_status=str(labels[EXIT_STATUS_LABEL]) if labels.get(EXIT_STATUS_LABEL) else None,
    )


__all__ = [
    "AWAITING_APPROVAL",
    "AWAITING_OPERATOR",
    "EXIT_STATUS_LABEL",
    "PAUSED_NAME",
    "RUN_UIDS_LABEL",
    "WORKER_LABEL",
    "RunLabels",
    "read_run_labels",
    "run_labels",
    "worker_in_message",
    "worker_tag",
]
