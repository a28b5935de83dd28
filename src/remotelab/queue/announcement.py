"""A worker's announcement: the Prefect variable through which the queue finds a lab's workers.

Each worker keeps one variable, ``remotelab_worker_<lab>_<id>``, up to date on every heartbeat:
its control endpoint, process and host, the experiment it runs, the question its plan asks and
its RunEngine's state. :class:`WorkerAnnouncement` is that variable's value, written by the
worker (:mod:`remotelab.worker.presence`) and read by the queue and peer workers.

A worker found lost (:mod:`remotelab.queue.lost`) gets a second variable,
``remotelab_lost_<lab>_<id>``, holding a :class:`LostRecord`: who marked it, when, and the
experiments marked Crashed. Creating it is the one compare-and-set Prefect offers (a second
creator is refused), so only one marker acts on a lost worker.
"""

from __future__ import annotations

import os
import re
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from remotelab.errors import QueueError
from remotelab.queue.control import ControlAddress

#: seconds between a worker's heartbeats; a worker silent for 3 of them is taken for dead
HEARTBEAT_INTERVAL = 2.0
VARIABLE_PREFIX = "remotelab_worker_"
LOST_PREFIX = "remotelab_lost_"


class AnnouncementMissing(QueueError):
    """A worker's announcement is not (any more) in Prefect: it was removed, e.g. by a marker
    that found the worker lost."""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", text.lower())


def variable_name(lab: str, worker_id: str) -> str:
    """The Prefect variable a worker of ``lab`` announces itself in."""
    return _slug(f"{VARIABLE_PREFIX}{lab}_{worker_id}")


def lab_prefix(lab: str) -> str:
    """The prefix of the variables of ``lab``'s workers."""
    return _slug(f"{VARIABLE_PREFIX}{lab}_")


def lost_variable(lab: str, worker_id: str) -> str:
    """The Prefect variable that records worker ``worker_id`` of ``lab`` as lost."""
    return _slug(f"{LOST_PREFIX}{lab}_{worker_id}")


def lost_prefix(lab: str) -> str:
    """The prefix of the variables of ``lab``'s lost workers."""
    return _slug(f"{LOST_PREFIX}{lab}_")


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def pid_alive(pid: int) -> bool:
    """Whether a process of this host runs with ``pid`` (a zombie, killed but not yet reaped
    by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc here
        return True
    fields = stat.rsplit(")", 1)[-1].split()
    return not fields or fields[0] != "Z"


class WorkerAnnouncement(BaseModel):
    """What a worker says of itself in its Prefect variable."""

    model_config = ConfigDict(extra="ignore")

    id: str
    lab: str
    pid: int = 0
    host: str = ""
    control: str = Field("", description="zmq endpoint of its control channel")
    control_key: str = Field(
        "", description="CURVE public key (Z85) of its control channel; clients check it"
    )
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

    @property
    def control_address(self) -> ControlAddress:
        """Its control channel's endpoint and key (trusted only if allowed here)."""
        return ControlAddress(self.control, self.control_key)

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


class LostRecord(BaseModel):
    """A lost worker, as the marker that won recorded it (the value of its lost variable)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    lab: str
    host: str = ""
    pid: int = 0
    by: str = Field(description="who marked it lost (the gateway, or a peer worker)")
    at: str = Field(default_factory=now_iso, description="ISO time it was marked lost")
    silent_for: float = Field(0.0, description="seconds its heartbeat had been silent")
    heartbeat: str = Field("", description="its last heartbeat")
    experiments: list[str] = Field(
        default_factory=list, description="the experiments marked Crashed"
    )
    done: bool = Field(False, description="whether the marker has finished with it")

    @property
    def variable(self) -> str:
        return lost_variable(self.lab, self.id)

    @classmethod
    def parse(cls, value: Any) -> LostRecord | None:
        """The record a variable's value holds, or None."""
        if not isinstance(value, dict):
            return None
        try:
            return cls.model_validate(value)
        except ValidationError:
            return None

    def to_value(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


__all__ = [
    "HEARTBEAT_INTERVAL",
    "LOST_PREFIX",
    "VARIABLE_PREFIX",
    "AnnouncementMissing",
    "LostRecord",
    "WorkerAnnouncement",
    "lab_prefix",
    "lost_prefix",
    "lost_variable",
    "now_iso",
    "pid_alive",
    "variable_name",
]
