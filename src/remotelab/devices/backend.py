"""The one small interface between a device class and what drives it.

A device class never knows whether it talks to hardware (a serial driver) or a
simulator: it calls a :class:`Backend`. Quantities and actions are named by
strings; each device class documents the ones it uses.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from typing import Any, Protocol, runtime_checkable

from remotelab.errors import NotConnectedError


@runtime_checkable
class Clock(Protocol):
    """Time as a device sees it: real for hardware, possibly faster for a simulator."""

    def time(self) -> float:
        """Seconds on this clock."""

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of clock time pass."""

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait up to ``seconds`` of clock time for ``event``; True if it was set."""

    def wall(self, seconds: float) -> float:
        """Real seconds that ``seconds`` of clock time take."""

    def begin(self, start: float) -> None:
        """The calling thread now carries out an operation issued at time ``start``."""

    def end(self) -> None:
        """The calling thread's operation is over."""


class RealClock:
    """Wall-clock time: the clock of real hardware."""

    speed = 1.0

    def time(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(seconds, 0.0))

    def wall(self, seconds: float) -> float:
        return seconds

    def begin(self, start: float) -> None:
        """Real time needs no bookkeeping per operation."""

    def end(self) -> None:
        """Real time needs no bookkeeping per operation."""


class Backend(ABC):
    """What a device speaks to: a serial driver or a simulator.

    - ``read(quantity)`` returns a measured or configured value;
    - ``write(quantity, value)`` changes a setting (a setpoint, a rate) at once;
    - ``run(action, **params)`` carries out an operation that takes time (a move,
      a dispense, a measurement) and returns when it is done; it raises
      :class:`remotelab.errors.DeviceFault` if it failed and returns early if
      :meth:`stop` is called;
    - ``stop()`` halts any motion or operation now.
    """

    #: the clock operations are timed on
    clock: Clock = RealClock()
    #: False for a stand-in that reaches no instrument (:class:`OfflineBackend`): devices then
    #: skip the reads and writes of their construction
    connected: bool = True

    def identify(self) -> str:
        """A short identity string (maker, model, serial) of what is behind the backend."""
        return type(self).__name__

    @abstractmethod
    def read(self, quantity: str) -> Any: ...

    @abstractmethod
    def write(self, quantity: str, value: Any) -> None: ...

    @abstractmethod
    def run(self, action: str, **params: Any) -> Any: ...

    @abstractmethod
    def stop(self) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection; the default does nothing."""


class OfflineBackend(Backend):
    """The backend of a device whose instrument is not to be opened (a lab loaded to validate
    submissions and describe itself, e.g. by the gateway, while the worker holds the ports).

    It opens nothing; every read, write, action, stop and identify raises
    :class:`~remotelab.errors.NotConnectedError` naming the device.
    """

    connected = False

    def __init__(self, device: str, where: str = ""):
        self.device = device
        self.where = where

    def _refuse(self, what: str) -> NotConnectedError:
        where = f" ({self.where})" if self.where else ""
        return NotConnectedError(
            self.device,
            f"cannot {what}: this lab was loaded without connecting to its instruments{where}, "
            "to validate and describe only; the lab's worker operates the devices",
        )

    def identify(self) -> str:
        raise self._refuse("identify the instrument")

    def read(self, quantity: str) -> Any:
        raise self._refuse(f"read {quantity}")

    def write(self, quantity: str, value: Any) -> None:
        raise self._refuse(f"write {quantity}")

    def run(self, action: str, **params: Any) -> Any:
        raise self._refuse(f"run {action}")

    def stop(self) -> None:
        raise self._refuse("stop the instrument")
