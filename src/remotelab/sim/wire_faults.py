"""Faults of the line between a served instrument and its driver.

:class:`WireFault` names what the line does to a command's reply; a :class:`FaultTable`
holds the faults armed on one server and hands each command the first that matches it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import StrEnum


class WireFault(StrEnum):
    """What the line does to the next matching command."""

    NO_REPLY = "no_reply"  #: the command is carried out, the reply never comes
    LATE = "late"  #: the reply comes ``delay`` real seconds late
    GARBAGE = "garbage"  #: the reply is replaced by line noise
    ERROR = "error"  #: the instrument refuses the command with an error reply
    DROP = "drop"  #: half the reply is sent, then the line drops (and comes back)


#: the bytes a GARBAGE fault sends instead of the reply
GARBAGE_BYTES = b"\xfe\x13\x87%\xff?\x00#\x9c"


@dataclass
class ArmedFault:
    """A fault waiting for the commands it applies to."""

    fault: WireFault
    match: str | None
    delay: float
    times: int | None


class FaultTable:
    """The wire faults armed on one server, oldest first; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[ArmedFault] = []

    def arm(
        self, fault: WireFault | str, match: str | None, delay: float, times: int | None
    ) -> None:
        """Arm ``fault`` for the next ``times`` commands starting with ``match`` (None: all)."""
        with self._lock:
            self._armed.append(ArmedFault(WireFault(fault), match, float(delay), times))

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def take(self, line: str) -> ArmedFault | None:
        """The first fault armed for the command ``line``, counted as used once."""
        with self._lock:
            for armed in self._armed:
                if armed.match is None or line.upper().startswith(armed.match.upper()):
                    if armed.times is not None:
                        armed.times -= 1
                        if armed.times <= 0:
                            self._armed.remove(armed)
                    return armed
        return None


__all__ = ["GARBAGE_BYTES", "ArmedFault", "FaultTable", "WireFault"]
