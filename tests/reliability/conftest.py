"""Fixtures of the reliability tests: faults injected for real (a Prefect server killed and
started again on its own database, worker processes killed), on the simulated lab.

Outages are shortened, not waited out: workers run with Prefect's client retries off
(``PREFECT_CLIENT_MAX_RETRIES=0``) and a retry cap of a second (``REMOTELAB_RETRY_CAP``), so
an outage of a few seconds takes the worker through every state a long one does — Prefect's
own retries exhausted, its back-off at the cap, records piling up in the outbox.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "queue"))  # the queue tests' helpers and test plans
