"""A worker's announcement: the Prefect variable through which the queue finds a lab's workers.

Each worker keeps one variable, ``remotelab_worker_<lab>_<id>``, up to date on every heartbeat:
its control endpoint, process and host, the experiment it runs, the question its plan asks and
its RunEngine's state. :class:`WorkerAnnouncement` is that variable's value, written by the
worker (:mod:`remotelab.worker.presence`) and read by the queue and peer workers.
"""

from __future__ import annotations

import os
import re
import socket
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: seconds between a worker's heartbeats; a worker silent for 3 of them is taken for dead
HEARTBEAT_INTERVAL = 2.0
VARIABLE_PREFIX = "remotelab_worker_"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", text.lower())


def variable_name(lab: str, worker_id: str) -> str:
    """The Prefect variable a worker of ``lab`` announces itself in."""
    return _slug(f"{VARIABLE_PREFIX}{lab}_{worker_id}")


def lab_prefix(lab: str) -> str:
    """The prefix of the variables of ``lab``'s workers."""
    return _slug(f"{VARIABLE_PREFIX}{lab}_")


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def pid_alive(pid: int) -> bool:
    """Whether a process of this host runs with ``pid``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkerAnnouncement(BaseModel):
    """What a worker says of itself in its Prefect variable."""

    model_config = ConfigDict(extra="ignore")

    id: str
    lab: str
    pid: int = 0
    host: str = ""
    control: str = Field("", description="zmq endpoint of its control channel")
    heartbeat: str = Field("", description="ISO time of its last heartbeat")
    current: str | None = Field(None, description="the experiment it runs")
    question: dict[str, Any] | None = Field(None, description="the question its plan asks")
    re_state: str = ""
    stopped: bool = False
    concurrency: int = Field(1, description="how many experiments it may run at once")
    running: list[dict[str, Any]] = Field(
        default_factory=list, description="the experiments it runs, each with its devices"
    )
    reservations: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="device → its holder and the experiments waiting"
    )
    waiting: dict[str, str] = Field(
        default_factory=dict, description="experiment → why it waits (a busy device)"
    )
    leases: list[str] = Field(
        default_factory=list, description="its leases on the lab's device slots in Prefect"
    )
    alerts: list[dict[str, Any]] = Field(
        default_factory=list,
        description="what someone should look at: key, kind, message, since, experiment",
    )

    def runs(self, experiment_id: str) -> bool:
        """Whether it says it runs ``experiment_id`` (``current`` or one of ``running``)."""
        return self.current == experiment_id or any(
            isinstance(r, dict) and r.get("id") == experiment_id for r in self.running
        )

    @property
    def variable(self) -> str:
        return variable_name(self.lab, self.id)

    @classmethod
    def parse(cls, value: Any) -> WorkerAnnouncement | None:
        """The announcement a variable's value holds, or None if it holds none."""
        if not isinstance(value, dict):
            return None
        try:
            return cls.model_validate(value)
        except ValidationError:
            return None

    def to_value(self) -> dict[str, Any]:
        """The variable's value (JSON)."""
        return self.model_dump(mode="json")

    def is_alive(self, *, stale_after: float | None = None, host: str | None = None) -> bool:
        """Whether the worker still runs.

        On this host (``host``, default: this machine's name) the pid decides; elsewhere the
        heartbeat must be younger than ``stale_after`` (3 heartbeat intervals by default).
        """
        if self.stopped:
            return False
        if self.host == (host or socket.gethostname()) and self.pid:
            return pid_alive(self.pid)
        try:
            beat = datetime.fromisoformat(self.heartbeat)
        except ValueError:
            return False
        limit = stale_after if stale_after is not None else 3 * HEARTBEAT_INTERVAL
        return (datetime.now(UTC) - beat).total_seconds() < limit


__all__ = [
    "HEARTBEAT_INTERVAL",
    "VARIABLE_PREFIX",
    "WorkerAnnouncement",
    "lab_prefix",
    "now_iso",
    "pid_alive",
    "variable_name",
]
