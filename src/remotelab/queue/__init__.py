"""The experiment queue: experiments are Prefect flow runs of the lab's deployment.

:class:`ExperimentQueue` submits, lists, orders, cancels, approves and holds; the lab's worker
(:mod:`remotelab.worker`) runs them. Prefect's database is the single source of truth.
"""

from remotelab.queue.models import (
    Experiment,
    ExperimentState,
    Priority,
    Question,
    needs_approval,
    pool_name,
)
from remotelab.queue.prefect_api import connect, ensure_lab
from remotelab.queue.prefect_lab import LabOnPrefect, PrefectLab
from remotelab.queue.server import PrefectServer
from remotelab.queue.service import ExperimentQueue

__all__ = [
    "Experiment",
    "ExperimentQueue",
    "ExperimentState",
    "LabOnPrefect",
    "PrefectLab",
    "PrefectServer",
    "Priority",
    "Question",
    "connect",
    "ensure_lab",
    "needs_approval",
    "pool_name",
]
