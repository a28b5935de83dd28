"""The lab worker: keeps a lab's devices and one RunEngine alive and runs its experiments.

:class:`LabWorker` is the entry point; it composes one part per job (claiming, running,
outcome and records, operator questions, control commands, presence, recovery).
:func:`build_worker` builds one wired to the run store and the live stream.
"""

from remotelab.worker.build import build_worker
from remotelab.worker.lab_worker import DocumentCallback, LabWorker
from remotelab.worker.operator import ASK_OPERATOR, ask_operator
from remotelab.worker.outcome import Outcome, decide

__all__ = [
    "ASK_OPERATOR",
    "DocumentCallback",
    "LabWorker",
    "Outcome",
    "ask_operator",
    "build_worker",
    "decide",
]
