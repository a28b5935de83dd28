"""The lab worker: keeps a lab's devices and one RunEngine alive and runs its experiments."""

from remotelab.worker.build import build_worker
from remotelab.worker.operator import ASK_OPERATOR, ask_operator
from remotelab.worker.worker import DocumentCallback, LabWorker

__all__ = ["ASK_OPERATOR", "DocumentCallback", "LabWorker", "ask_operator", "build_worker"]
