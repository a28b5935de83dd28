"""Actuators: devices that change the world and report when the change is done.

Every ``set()`` is checked against the soft limits before anything moves and
returns a status that completes only when the change has really happened.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ophyd import Component as Cpt
from ophyd import Kind
from ophyd.status import Status

from remotelab.devices.base import BackendDevice, Readback, Setting
from remotelab.errors import DeviceFault, LimitError


class Actuator(BackendDevice):
    """Base of the actuators: settable, stoppable, with a declared safe state."""

    role: ClassVar[str] = "actuator"
    #: the readback that ``position`` reports
    readback_name: ClassVar[str] = ""

    @property
    def position(self) -> Any:
        return getattr(self, self.readback_name).get()

    def setpoint_problem(self, unit: str, tolerance: float = 1e-6) -> str | None:
        """The instrument's setpoint if it is not within ``tolerance`` of the safe one
        (``safe_settings``), else None."""
        target = float(self.safe_settings["setpoint"])
        now = float(self.backend_read("setpoint"))
        if abs(now - target) > tolerance:
            return f"setpoint {now:g} {unit}, its safe state {target:g} {unit}"
        return None

    def _wait_until(self, reached, poll: float) -> None:
        """Poll ``reached()`` every ``poll`` clock seconds until true; fail if stopped."""
        while not reached():
            if self.clock.wait(self.stop_event, poll):
                raise DeviceFault(self.name, "stopped before the target was reached")


class TemperatureController(Actuator):
    """A heater/chiller with its own probe: ``set(T)`` completes once T has settled.

    Settled means the reading stayed within ``tolerance`` of the setpoint for
    ``settle_time`` seconds. ``ramp_rate`` (°C/min) limits how fast the setpoint
    moves. ``stop()`` holds the present temperature. Backend quantities:
    ``temperature`` (read), ``setpoint`` and ``ramp_rate`` (write).
    """

    readback_name = "temperature"
    default_limits = {
        "setpoint": (-10.0, 150.0),
        "ramp_rate": (0.1, 20.0),
        "tolerance": (0.01, 5.0),
        "settle_time": (0.0, 3600.0),
    }
    default_safe_state = {"setpoint": 25.0}
    safe_keys = ("setpoint",)
    operation_timeout = 7200.0
    poll_interval: ClassVar[float] = 1.0

    temperature = Cpt(
        Readback, units="degC", precision=2, valid_range=(-50.0, 300.0), kind=Kind.hinted
    )
    setpoint = Cpt(Setting, value=25.0, units="degC", precision=2)
    ramp_rate = Cpt(Setting, value=10.0, units="degC/min", precision=2, kind=Kind.config)
    tolerance = Cpt(Setting, value=0.2, units="degC", precision=2, forward=False, kind=Kind.config)
    settle_time = Cpt(Setting, value=10.0, units="s", precision=1, forward=False, kind=Kind.config)

    def __init__(self, name: str, **kwargs: Any):
        super().__init__(name, **kwargs)
        if self.connected:
            self.backend_write("ramp_rate", self.ramp_rate.get())
            self.setpoint.sync(float(self.backend_read("setpoint")))

    def set(self, value: float, **_: Any) -> Status:
        self.check_limit("setpoint", value, "degC")
        return self.operate(f"settle at {value} degC", lambda: self._settle(float(value)))

    def _settle(self, target: float) -> None:
        self.setpoint.put(target)
        tolerance, hold = float(self.tolerance.get()), float(self.settle_time.get())
        since: list[float | None] = [None]

        def settled() -> bool:
            now = self.clock.time()
            if abs(self.temperature.get() - target) <= tolerance:
                if since[0] is None:
                    since[0] = now
                return now - since[0] >= hold
            since[0] = None
            return False

        self._wait_until(settled, self.poll_interval)

    def stop(self, *, success: bool = False) -> None:
        super().stop(success=success)
        self.setpoint.sync(float(self.backend_read("setpoint")))

    def safe_problem(self) -> str | None:
        """A setpoint off the safe one by more than the settle ``tolerance`` (a stopped
        controller holds the present temperature, settled there or close)."""
        return self.setpoint_problem("degC", float(self.tolerance.get()))

    def go_safe(self) -> Status:
        """Set the safe setpoint; the block then cools or warms on its own."""
        target = float(self.safe_settings.get("setpoint", 25.0))
        return self.operate("go to the safe setpoint", lambda: self.setpoint.apply(target))


class SyringePump(Actuator):
    """A syringe pump. Its position is the volume dispensed (mL) since it was filled.

    ``set(v)`` dispenses ``v - dispensed`` mL at ``rate`` mL/min; a pump cannot
    un-dispense, so ``v`` must lie between ``dispensed`` and ``dispensed + remaining``.
    ``dispense(volume)`` is the same as a relative move, ``refill()`` fills the syringe.
    The volumes are read back from the backend after every operation, so a dispense
    that failed part-way is recorded as far as it got. Backend quantities:
    ``dispensed``, ``remaining`` (read), ``rate`` (write); actions ``dispense``, ``refill``.
    """

    readback_name = "dispensed"
    default_limits = {"rate": (0.01, 50.0), "volume": (0.0, 50.0)}
    default_safe_state: ClassVar[dict[str, Any]] = {}
    operation_timeout = 3600.0

    dispensed = Cpt(Readback, units="mL", precision=4, kind=Kind.hinted)
    remaining = Cpt(Readback, units="mL", precision=4)
    rate = Cpt(Setting, value=5.0, units="mL/min", precision=3, kind=Kind.config)

    def __init__(self, name: str, **kwargs: Any):
        super().__init__(name, **kwargs)
        if self.connected:
            self.backend_write("rate", self.rate.get())

    def set(self, value: float, **_: Any) -> Status:
        volume = float(value) - float(self.dispensed.get())
        return self.dispense(volume, target=float(value))

    def dispense(self, volume: float, *, target: float | None = None) -> Status:
        """Dispense ``volume`` mL at the configured rate."""
        remaining = float(self.remaining.get())
        lo, hi = self.limits["volume"]
        if volume < -1e-9 or volume > min(hi, remaining) + 1e-9:
            shown = target if target is not None else volume
            what = "dispensed volume" if target is not None else "volume"
            base = float(self.dispensed.get()) if target is not None else 0.0
            raise LimitError(
                self.name,
                what,
                shown,
                round(base + lo, 6),
                round(base + min(hi, remaining), 6),
                "mL",
            )
        if volume <= 1e-9:
            return self.operate("dispense nothing", lambda: None)
        return self.operate(
            f"dispense {volume:.4g} mL", lambda: self.backend_run("dispense", volume=volume)
        )

    def refill(self) -> Status:
        """Fill the syringe from its reservoir."""
        return self.operate("refill", lambda: self.backend_run("refill"))


class Stirrer(Actuator):
    """A magnetic stirrer. ``set(rpm)`` completes when the speed is within 2 % (or 5 rpm).

    Backend quantities: ``speed`` (read), ``setpoint`` (write). Safe state: stopped (0 rpm).
    """

    readback_name = "speed"
    default_limits = {"setpoint": (0.0, 1500.0)}
    default_safe_state = {"setpoint": 0.0}
    safe_keys = ("setpoint",)
    operation_timeout = 120.0
    poll_interval: ClassVar[float] = 0.2

    speed = Cpt(Readback, units="rpm", precision=0, valid_range=(0.0, 2000.0), kind=Kind.hinted)
    setpoint = Cpt(Setting, value=0.0, units="rpm", precision=0)

    def set(self, value: float, **_: Any) -> Status:
        self.check_limit("setpoint", value, "rpm")
        return self._spin(float(value))

    def _spin(self, target: float) -> Status:
        band = max(5.0, 0.02 * target)

        def spin() -> None:
            self.setpoint.apply(target)
            self._wait_until(lambda: abs(self.speed.get() - target) <= band, self.poll_interval)

        return self.operate(f"spin to {target:g} rpm", spin)

    def stop(self, *, success: bool = False) -> None:
        super().stop(success=success)
        self.setpoint.apply(0.0)

    def safe_problem(self) -> str | None:
        return self.setpoint_problem("rpm")

    def go_safe(self) -> Status:
        """Spin to the safe speed (0 rpm unless the lab says otherwise), limits or not."""
        return self._spin(float(self.safe_settings.get("setpoint", 0.0)))
