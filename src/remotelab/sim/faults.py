"""Fault injection for simulated instruments: tell a device to misbehave once."""

from __future__ import annotations

import threading
from enum import StrEnum


class Fault(StrEnum):
    """What a simulated instrument does on its next operation."""

    FAIL = "fail"  #: the next operation raises an instrument error
    HANG = "hang"  #: the next operation never finishes until the device is stopped
    OUT_OF_RANGE = "out_of_range"  #: the next reading is outside the measuring range
    DROP = "drop"  #: (arm) the next sample carried is dropped on the way


class FaultPlan:
    """The faults armed on one instrument, consumed one per matching operation.

    A fault armed with an ``action`` fires only on that action (e.g. ``dispense``).
    """

    def __init__(self) -> None:
        self._armed: list[tuple[Fault, str | None]] = []
        self._lock = threading.Lock()

    def arm(self, fault: Fault | str, action: str | None = None) -> None:
        with self._lock:
            self._armed.append((Fault(fault), action))

    def take(self, *kinds: Fault, action: str | None = None) -> Fault | None:
        """Consume and return the first armed fault among ``kinds`` that fits ``action``."""
        with self._lock:
            for i, (fault, only) in enumerate(self._armed):
                if fault in kinds and (only is None or only == action):
                    return self._armed.pop(i)[0]
        return None

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def armed(self, action: str | None = None) -> tuple[Fault, ...]:
        """The faults that would fire on ``action``."""
        with self._lock:
            return tuple(f for f, only in self._armed if only is None or only == action)


def inject_fault(device, fault: Fault | str, action: str | None = None) -> None:
    """Arm ``fault`` on a device of a simulated lab, optionally only for one ``action``."""
    faults = getattr(device.backend, "faults", None)
    if not isinstance(faults, FaultPlan):
        raise TypeError(f"{device.name} is not driven by a simulator; faults cannot be injected")
    faults.arm(fault, action)
