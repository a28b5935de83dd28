"""What the gateway serves: each lab with its queue (:class:`LabService`), and the whole
(:class:`Gateway`) that the routes reach through their dependencies.

A lab has one plan registry, its queue's: the plans the gateway lists and the submissions
the queue accepts are checked by the same object. To serve other plans, give the queue its
registry (``ExperimentQueue(lab, registry=…)``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from remotelab.api.auth import AuthStore
from remotelab.api.guard import Guard
from remotelab.api.live import LiveHub
from remotelab.api.readings import StoredReadings
from remotelab.errors import RunNotFound, UnknownLabError
from remotelab.settings import get_settings

if TYPE_CHECKING:
    from remotelab.data import RunStore
    from remotelab.lab import Lab
    from remotelab.plans.registry import PlanRegistry
    from remotelab.queue import ExperimentQueue


@dataclass
class LabService:
    """One lab as the gateway serves it: the lab (for validation) and its queue."""

    lab: Lab
    queue: ExperimentQueue
    #: how many requests may change the lab's queue at once (SQLite-backed Prefect servers
    #: answer many concurrent writers slowly and sometimes with errors)
    write_slots: int = 4

    def __post_init__(self) -> None:
        self.writes = threading.BoundedSemaphore(self.write_slots)

    @property
    def name(self) -> str:
        return self.lab.name

    @property
    def registry(self) -> PlanRegistry:
        """The lab's plan registry: the queue's own, one object for listing and submitting."""
        return cast("PlanRegistry", self.queue.registry)


@dataclass
class Gateway:
    """The labs, accounts, run store and live hub one gateway serves."""

    auth: AuthStore
    labs: dict[str, LabService]
    store: RunStore | None = None
    live: LiveHub = field(default_factory=lambda: LiveHub(None))
    #: devices' latest readings from the run store, where the live stream has none
    readings: StoredReadings = field(default_factory=StoredReadings)
    #: set when the server shuts down: live streams end
    closing: threading.Event = field(default_factory=threading.Event)
    #: authenticates requests (failures slowed and logged); made from ``auth`` if not given
    guard: Guard = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.guard is None:
            self.guard = Guard(self.auth, limit=get_settings().auth_failures)

    def lab(self, name: str) -> LabService:
        """The lab called ``name`` (:class:`UnknownLabError` if this gateway has none)."""
        if name not in self.labs:
            raise UnknownLabError(
                f"no lab {name!r} here; this gateway serves: {', '.join(self.labs) or 'none'}"
            )
        return self.labs[name]

    def run_store(self) -> RunStore:
        """The run store (:class:`RunNotFound` if this gateway has none configured)."""
        if self.store is None:
            raise RunNotFound("this gateway has no run store configured")
        return self.store


__all__ = ["Gateway", "LabService"]
