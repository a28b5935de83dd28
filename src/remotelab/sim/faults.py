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
    """The faults armed on one instrument, consumed one per matching operation."""

    def __init__(self) -> None:
        self._armed: list[Fault] = []
        self._lock = threading.Lock()

    def arm(self, fault: Fault | str) -> None:
        with self._lock:
            self._armed.append(Fault(fault))

    def take(self, *kinds: Fault) -> Fault | None:
        """Consume and return the first armed fault among ``kinds``, if any."""
        with self._lock:
            for i, fault in enumerate(self._armed):
                if fault in kinds:
                    return self._armed.pop(i)
        return None

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    @property
    def armed(self) -> tuple[Fault, ...]:
        with self._lock:
            return tuple(self._armed)


def inject_fault(device, fault: Fault | str) -> None:
    """Arm ``fault`` on a device of a simulated lab (its backend must be simulated)."""
    faults = getattr(device.backend, "faults", None)
    if not isinstance(faults, FaultPlan):
        raise TypeError(f"{device.name} is not driven by a simulator; faults cannot be injected")
    faults.arm(fault)
