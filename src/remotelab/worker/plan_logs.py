"""What bluesky logs about a worker's plans: a normal abort in one line, not a traceback.

bluesky's RunEngine logs every aborted run with ``log.exception("Run aborted")``: an abort
the operator or a cancel asked for (``RequestAbort``, the plan's task cancelled, a pause that
could not be taken) then prints some forty lines of traceback in the worker's terminal, and
its tracing warns ``No open traces left to close!``. :class:`CalmAborts` keeps such a record
to one line (``Run aborted (as asked)``) and drops the tracing warning; a run that fails on
an error keeps its traceback.
"""

from __future__ import annotations

import asyncio
import logging

from bluesky.utils import FailedPause, PlanHalt, RequestAbort

#: bluesky's logger (its RunEngines log through it)
BLUESKY = "bluesky"
#: the exceptions of a run ended on purpose
ASKED = (RequestAbort, asyncio.CancelledError, FailedPause, PlanHalt)


class CalmAborts(logging.Filter):
    """A filter of bluesky's logger: an abort asked for in one line, no tracing warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() == "No open traces left to close!":
            return False
        error = record.exc_info[1] if record.exc_info else None
        if record.getMessage() == "Run aborted" and isinstance(error, ASKED):
            record.msg, record.args = "Run aborted (as asked)", ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def calm_aborts() -> None:
    """Install :class:`CalmAborts` on bluesky's logger (once)."""
    logger = logging.getLogger(BLUESKY)
    if not any(isinstance(f, CalmAborts) for f in logger.filters):
        logger.addFilter(CalmAborts())


__all__ = ["ASKED", "BLUESKY", "CalmAborts", "calm_aborts"]
