"""Where every sample is: the lab's record, kept true to the physical state.

The tracker is only changed by a device once the backend has confirmed a step
(a grip, a release), so a failed or interrupted move never shows as done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from remotelab.errors import SampleError

GRIPPER = "gripper"
LOST = "lost"


@dataclass(frozen=True)
class SampleMove:
    """One recorded change of a sample's location."""

    sample: str
    source: str
    destination: str
    time: float
    note: str = ""


@dataclass
class SampleTracker:
    """Sample id → location, over a fixed set of locations that hold one sample each; and
    the samples a plan has used up (``consumed``: sample → why), which plans that use up
    their sample refuse."""

    locations: tuple[str, ...]
    positions: dict[str, str] = field(default_factory=dict)
    history: list[SampleMove] = field(default_factory=list)
    consumed: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self.locations = tuple(self.locations)
        for _sample, location in list(self.positions.items()):
            self._check_location(location)
        occupied = [loc for loc in self.positions.values() if loc not in (LOST,)]
        duplicates = {loc for loc in occupied if occupied.count(loc) > 1}
        if duplicates:
            raise SampleError(f"more than one sample at {', '.join(sorted(duplicates))}")

    @classmethod
    def build(cls, locations: Iterable[str], samples: Mapping[str, str]) -> SampleTracker:
        return cls(locations=tuple(locations), positions=dict(samples))

    def _check_location(self, location: str) -> None:
        if location not in self.locations and location not in (GRIPPER, LOST):
            raise SampleError(
                f"unknown location {location!r}; known locations: {', '.join(self.locations)}"
            )

    @property
    def samples(self) -> tuple[str, ...]:
        return tuple(self.positions)

    def where(self, sample: str) -> str:
        """The location of ``sample``; :class:`SampleError` if it is unknown."""
        with self._lock:
            if sample not in self.positions:
                raise SampleError(
                    f"unknown sample {sample!r}; known samples: {', '.join(self.positions)}"
                )
            return self.positions[sample]

    def at(self, location: str) -> str | None:
        """The sample at ``location``, or None if it is empty."""
        self._check_location(location)
        with self._lock:
            for sample, loc in self.positions.items():
                if loc == location:
                    return sample
            return None

    def move(self, sample: str, destination: str, note: str = "") -> None:
        """Record that ``sample`` is now at ``destination`` (the move has happened)."""
        with self._lock:
            source = self.where(sample)
            self._check_location(destination)
            other = self.at(destination) if destination != LOST else None
            if other is not None and other != sample:
                raise SampleError(f"{destination} already holds sample {other!r}")
            self.positions[sample] = destination
            self.history.append(SampleMove(sample, source, destination, time.time(), note))

    def mark_lost(self, sample: str, note: str) -> None:
        """Record that ``sample`` is no longer anywhere the lab can reach (e.g. dropped)."""
        self.move(sample, LOST, note)

    def consume(self, sample: str, why: str) -> None:
        """Record that ``sample`` is used up (a titration took it past its endpoint)."""
        with self._lock:
            self.where(sample)
            self.consumed[sample] = why

    def snapshot(self) -> dict[str, str]:
        with self._lock:
            return dict(self.positions)
