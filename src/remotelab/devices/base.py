"""Building blocks shared by every remotelab device class.

- :class:`Quantity` signals carry units, precision and a measuring range into
  ``describe()``;
- :class:`Readback` signals ask the backend each time they are read;
- :class:`Setting` signals are checked against soft limits, then written to the backend;
- :class:`BackendDevice` runs operations in a thread with a watchdog and turns
  every failure into a failed status with a message that names the device.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
from ophyd import Device, Kind, Signal
from ophyd.status import Status

from remotelab.devices.backend import Backend
from remotelab.errors import DeviceError, DeviceFault, DeviceTimeout, LimitError, RemotelabError

#: a watchdog never fires sooner than this many real seconds (thread start-up jitter)
MIN_WALL_TIMEOUT = 1.0


def _dtype_of(value: Any) -> tuple[str, list[int], str]:
    """The event-model dtype, shape and numpy dtype string of a value."""
    if isinstance(value, np.ndarray):
        return "array", list(value.shape), value.dtype.str
    if isinstance(value, bool | np.bool_):
        return "boolean", [], "|b1"
    if isinstance(value, int | np.integer):
        return "integer", [], "<i8"
    if isinstance(value, float | np.floating):
        return "number", [], "<f8"
    return "string", [], ""


class Quantity(Signal):
    """A signal with units, display precision and (optionally) a measuring range."""

    def __init__(
        self,
        *args: Any,
        units: str | None = None,
        precision: int | None = None,
        valid_range: tuple[float, float] | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.units = units
        self.precision = precision
        self.valid_range = valid_range

    def describe(self) -> dict[str, dict[str, Any]]:
        dtype, shape, dtype_numpy = _dtype_of(self.get())
        key: dict[str, Any] = {
            "source": f"remotelab:{self.name}",
            "dtype": dtype,
            "shape": shape,
            "units": self.units,
            "precision": self.precision,
        }
        if dtype_numpy:
            key["dtype_numpy"] = dtype_numpy
        if self.valid_range is not None:
            key["limits"] = {"display": {"low": self.valid_range[0], "high": self.valid_range[1]}}
        return {self.name: key}

    def check_range(self, value: Any) -> Any:
        """Raise :class:`OutOfRangeReading` if a reading lies outside the measuring range."""
        if self.valid_range is None:
            return value
        lo, hi = self.valid_range
        arr = np.asarray(value, dtype=float)
        if arr.size and (not np.all(np.isfinite(arr)) or arr.min() < lo or arr.max() > hi):
            bad = float(arr.max() if arr.max() > hi else arr.min()) if arr.size else value
            unit = f" {self.units}" if self.units else ""
            raise _owner(self).out_of_range(self.attr_name, bad, lo, hi, unit)
        return value


def _owner(signal: Signal) -> BackendDevice:
    parent = signal.parent
    while parent is not None and not isinstance(parent, BackendDevice):
        parent = parent.parent
    if parent is None:
        raise RuntimeError(f"{signal.name} is not part of a BackendDevice")
    return parent


class Readback(Quantity):
    """A quantity read from the backend every time it is read (a live readback)."""

    def __init__(self, *args: Any, quantity: str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.quantity = quantity

    def get(self, **kwargs: Any) -> Any:
        device = _owner(self)
        value = device.backend_read(self.quantity or self.attr_name)
        self.check_range(value)
        self._readback = value
        return value


class Setting(Quantity):
    """A setting checked against the device's soft limits, then written to the backend.

    With ``forward=False`` the value stays on the device (e.g. a settle tolerance).
    """

    def __init__(self, *args: Any, quantity: str | None = None, forward: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.quantity = quantity
        self.forward = forward

    def put(self, value: Any, **kwargs: Any) -> None:
        _owner(self).check_limit(self.attr_name, value, self.units or "")
        self.apply(value, **kwargs)

    def set(self, value: Any, **kwargs: Any):
        """Like ``put`` in a status; a value outside the soft limits is refused at once."""
        _owner(self).check_limit(self.attr_name, value, self.units or "")
        return super().set(value, **kwargs)

    def apply(self, value: Any, **kwargs: Any) -> None:
        """Write without the soft-limit check: only for stop and safe-state paths."""
        if self.forward:
            _owner(self).backend_write(self.quantity or self.attr_name, value)
        super().put(value, **kwargs)

    def sync(self, value: Any) -> None:
        """Record the value the instrument reports, without writing it back."""
        super().put(value)


class BackendDevice(Device):
    """An ophyd device driven through a :class:`Backend`.

    Subclasses declare ``default_limits`` (soft limits per settable quantity),
    ``default_safe_state`` (the settings that make the device safe) and
    ``operation_timeout`` (clock seconds an operation may take before the
    watchdog stops the device and fails its status).
    """

    default_limits: ClassVar[dict[str, tuple[float, float]]] = {}
    default_safe_state: ClassVar[dict[str, Any]] = {}
    #: the settings a lab file may give in ``safe_state``
    safe_keys: ClassVar[tuple[str, ...]] = ()
    operation_timeout: float = 600.0
    #: role of the device in a lab: "sensor", "actuator" or "robot"
    role: ClassVar[str] = "sensor"

    def __init__(
        self,
        name: str,
        *,
        backend: Backend,
        limits: Mapping[str, tuple[float, float]] | None = None,
        safe_state: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ):
        self.backend = backend
        if timeout is not None:
            self.operation_timeout = float(timeout)
        super().__init__(name=name, **kwargs)
        self.limits: dict[str, tuple[float, float]] = dict(self.default_limits)
        for key, (lo, hi) in (limits or {}).items():
            self.limits[key] = self._narrowed(key, float(lo), float(hi))
        unknown = sorted(set(safe_state or {}) - set(self.safe_keys))
        if unknown:
            known = ", ".join(self.safe_keys) or "none: it is made safe by stopping it"
            raise DeviceError(
                name,
                f"unknown safe_state key(s) {', '.join(unknown)}; "
                f"{type(self).__name__} takes: {known}",
            )
        self.safe_settings: dict[str, Any] = {**self.default_safe_state, **(safe_state or {})}
        self._op_lock = threading.Lock()
        self._op_local = threading.local()
        self._stops: set[threading.Event] = set()
        self._stops_lock = threading.Lock()
        for key, value in (config or {}).items():
            signal = getattr(self, key, None)
            if not isinstance(signal, Signal):
                raise DeviceError(name, f"unknown configuration key {key!r}")
            if isinstance(signal, Setting) and not self.connected:
                self.check_limit(key, value, signal.units or "")
                signal.sync(value)  # recorded, not written: there is no instrument to write to
            else:
                signal.put(value)

    @property
    def connected(self) -> bool:
        """False when the backend reaches no instrument (a lab loaded to validate only)."""
        return self.backend.connected

    # -- backend access with the device's name on every error ---------------------------
    @property
    def clock(self):
        return self.backend.clock

    def _wrap(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except RemotelabError:
            raise
        except Exception as exc:
            raise DeviceFault(self.name, f"{what} failed: {exc}") from exc

    def backend_read(self, quantity: str) -> Any:
        return self._wrap(f"reading {quantity}", lambda: self.backend.read(quantity))

    def backend_write(self, quantity: str, value: Any) -> None:
        self._wrap(f"writing {quantity}", lambda: self.backend.write(quantity, value))

    def backend_run(self, action: str, **params: Any) -> Any:
        return self._wrap(action, lambda: self.backend.run(action, **params))

    # -- limits and errors ---------------------------------------------------------------
    def _narrowed(self, key: str, lo: float, hi: float) -> tuple[float, float]:
        """Lab-file limits: a known settable quantity, within the class's own limits."""
        if key not in self.default_limits:
            raise DeviceError(
                self.name,
                f"no soft limit {key!r}; {type(self).__name__} has limits for: "
                f"{', '.join(self.default_limits) or 'nothing'}",
            )
        base_lo, base_hi = self.default_limits[key]
        if lo < base_lo or hi > base_hi:
            raise DeviceError(
                self.name,
                f"limits of {key} [{lo:g}, {hi:g}] go beyond what {type(self).__name__} "
                f"allows [{base_lo:g}, {base_hi:g}]; a lab file can only narrow them",
            )
        return lo, hi

    def check_limit(self, quantity: str, value: Any, unit: str = "") -> None:
        """Raise :class:`LimitError` if ``value`` is outside the soft limits of ``quantity``."""
        if quantity not in self.limits:
            return
        lo, hi = self.limits[quantity]
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise LimitError(self.name, quantity, value, lo, hi, unit) from None
        if math.isnan(number) or not lo <= number <= hi:
            raise LimitError(self.name, quantity, value, lo, hi, unit)

    def out_of_range(self, quantity: str, value: Any, lo: float, hi: float, unit: str):
        from remotelab.errors import OutOfRangeReading

        return OutOfRangeReading(
            self.name,
            f"{quantity} reading {value!r}{unit} is outside the measuring range "
            f"[{lo}, {hi}]{unit}; check the instrument",
        )

    # -- operations ------------------------------------------------------------------------
    def operate(self, what: str, fn: Callable[[], Any], timeout: float | None = None) -> Status:
        """Run ``fn`` in a thread; return a status that fails with a named error if it does.

        ``timeout`` is in clock seconds; past it the device is stopped and the status
        fails with :class:`DeviceTimeout`.
        """
        status = Status(obj=self)
        guard = threading.Lock()
        timeout = self.operation_timeout if timeout is None else timeout
        stop_event = threading.Event()  # this operation's own: a later one cannot clear it
        with self._stops_lock:
            self._stops.add(stop_event)

        timed_out = threading.Event()

        def finish(exc: BaseException | None, *, watchdog: bool = False) -> None:
            with guard:
                # once the watchdog fires, its timeout is the outcome, even if the stop it
                # sends makes the operation fail ("stopped") before the watchdog reports
                if status.done or (timed_out.is_set() and not watchdog):
                    return
                if exc is None:
                    status.set_finished()
                else:
                    status.set_exception(exc)

        issued = self.clock.time()

        def target() -> None:
            self._op_local.stop = stop_event
            try:
                with self._op_lock:
                    if stop_event.is_set():
                        raise DeviceFault(self.name, f"{what} was stopped before it began")
                    self.clock.begin(issued)
                    try:
                        fn()
                    finally:
                        self.clock.end()
            except RemotelabError as exc:
                finish(exc)
            except Exception as exc:
                finish(DeviceFault(self.name, f"{what} failed: {exc}"))
            else:
                finish(None)
            finally:
                with self._stops_lock:
                    self._stops.discard(stop_event)

        def watchdog() -> None:
            if status.done:
                return
            timed_out.set()
            outcome = "the device was stopped"
            try:
                self.stop()
            except Exception as exc:  # e.g. the line to it is down: say so, still fail
                outcome = f"stopping it failed too: {exc}"
            finish(
                DeviceTimeout(self.name, f"{what} did not finish within {timeout:g} s; {outcome}"),
                watchdog=True,
            )

        timer = threading.Timer(max(self.clock.wall(timeout), MIN_WALL_TIMEOUT), watchdog)
        timer.daemon = True
        timer.start()
        status.add_callback(lambda _st: timer.cancel())
        threading.Thread(target=target, name=f"{self.name}:{what}", daemon=True).start()
        return status

    @property
    def stop_event(self) -> threading.Event:
        """The stop event of the operation running in the calling thread."""
        event = getattr(self._op_local, "stop", None)
        return event if event is not None else threading.Event()

    def stopped(self) -> bool:
        """True once :meth:`stop` was called during the calling thread's operation."""
        return self.stop_event.is_set()

    def stop(self, *, success: bool = False) -> None:
        """Halt whatever the device is doing, now: every operation under way fails."""
        with self._stops_lock:
            for event in self._stops:
                event.set()
        self.backend_stop()

    def backend_stop(self) -> None:
        self._wrap("stop", self.backend.stop)

    def safe_problem(self) -> str | None:
        """Why the device is not at its safe state, read from the instrument without changing
        anything; ``None`` when it is (a sensor always is)."""
        return None

    def go_safe(self) -> Status:
        """Bring the device to its declared safe state (``safe_settings``)."""
        status = Status(obj=self)
        status.set_finished()
        return status

    def identify(self) -> str:
        return self._wrap("identify", self.backend.identify)


def kind_config() -> dict[str, Any]:
    return {"kind": Kind.config}
