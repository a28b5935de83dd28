"""What remotelab writes on an experiment's flow run for others to read: state names, the
worker tag in state messages, and the run's labels.

Both sides live here: the worker writes with :func:`worker_tag`, :func:`outcome_tail` and
:func:`run_labels`; the queue, the listing and peer workers read with :func:`read_record`.

Every state message a worker writes starts with its tag, so the worker of a claimed run is
known from the claim on. The final state's message ends with the outcome's tail
(``[runs <uid>,<uid>] [exit <status>]``): it is written with the state, in the same request,
so a reader of a finished run always finds it. The run's labels (``remotelab.worker``,
``remotelab.run_uids``, ``remotelab.exit_status``) record the same for Prefect's UI and
filters; the worker writes them in the background (on Prefect's SQLite database a label
update is a read-then-write transaction that waits seconds behind other writers), and they
win over the message once written.
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
#: the mark of a Crashed state set because its worker was lost (see :func:`lost_message`)
LOST_MARK = "[lost]"
_LOST_RE = re.compile(r"^\[worker [^\]\s]+\] \[lost\] ")
_LOST_BY_RE = re.compile(r"; marked lost by ([^;]+); ")
_TAIL_RE = re.compile(r" \[runs ([^\]\s]*)\] \[exit ([^\]\s]*)\]$")


def worker_tag(worker_id: str) -> str:
    """The tag that starts every state message a worker writes: ``[worker <id>]``."""
    if not worker_id or any(c.isspace() or c == "]" for c in worker_id):
        raise ValueError(f"a worker id has no spaces or ']': {worker_id!r}")
    return f"[worker {worker_id}]"


def worker_in_message(message: str | None) -> str | None:
    """The worker a state message names (see :func:`worker_tag`), or None."""
    m = _WORKER_RE.search(message or "")
    return m.group(1) if m else None


def outcome_tail(run_uids: list[str], exit_status: str | None) -> str:
    """The end of a finished experiment's state message: its runs and its exit status."""
    return f" [runs {','.join(run_uids) or '-'}] [exit {exit_status or '-'}]"


def lost_message(worker_id: str, by: str, run_uids: list[str], silent_for: float) -> str:
    """The message of the Crashed state an experiment gets when its worker is lost: the
    worker's tag, :data:`LOST_MARK`, who noticed, and the outcome tail with the run uids the
    worker had emitted (its exit status unknown)."""
    if ";" in by:
        raise ValueError(f"a marker's name has no ';': {by!r}")
    return (
        f"{worker_tag(worker_id)} {LOST_MARK} crashed: worker {worker_id} was lost "
        f"(no heartbeat for {silent_for:.0f} s); marked lost by {by}; documents it emitted "
        "are kept; not re-run" + outcome_tail(run_uids, None)
    )


def is_lost_message(message: str | None) -> bool:
    """Whether a state message is a lost worker's Crashed mark (:func:`lost_message`), which
    the worker's own recorded outcome may replace if it comes back."""
    return bool(_LOST_RE.match(message or ""))


def lost_marker(message: str | None) -> str | None:
    """Who marked the experiment's worker lost, from a :func:`lost_message`; else None."""
    if not is_lost_message(message):
        return None
    m = _LOST_BY_RE.search(message or "")
    return m.group(1) if m else None


@dataclass(frozen=True)
class RunLabels:
    """What an experiment's record says: its worker, its runs' uids, its exit status."""

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


def read_message(message: str | None) -> RunLabels:
    """What a state message records: its worker tag and, when finished, its outcome tail."""
    tail = _TAIL_RE.search(message or "")
    uids = [u for u in tail.group(1).split(",") if u and u != "-"] if tail else []
    status = tail.group(2) if tail and tail.group(2) != "-" else None
    return RunLabels(worker=worker_in_message(message), run_uids=uids, exit_status=status)


def read_record(labels: dict[str, Any] | None, message: str | None) -> RunLabels:
    """A run's record: its labels where written, else its state message."""
    from_labels, from_message = read_run_labels(labels), read_message(message)
    return RunLabels(
        worker=from_labels.worker or from_message.worker,
        run_uids=from_labels.run_uids or from_message.run_uids,
        exit_status=from_labels.exit_status or from_message.exit_status,
    )


__all__ = [
    "AWAITING_APPROVAL",
    "AWAITING_OPERATOR",
    "EXIT_STATUS_LABEL",
    "LOST_MARK",
    "PAUSED_NAME",
    "RUN_UIDS_LABEL",
    "WORKER_LABEL",
    "RunLabels",
    "is_lost_message",
    "lost_marker",
    "lost_message",
    "outcome_tail",
    "read_message",
    "read_record",
    "read_run_labels",
    "run_labels",
    "worker_in_message",
    "worker_tag",
]
