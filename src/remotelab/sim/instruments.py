"""Simulated instruments: :class:`~remotelab.devices.Backend` implementations over the world model.

Each instrument has realistic operation times on the world's clock, reads the
world with its own seeded noise, and can be told to misbehave (see :mod:`faults`).
"""

from __future__ import annotations

import threading
import zlib
from typing import Any, ClassVar

import numpy as np

from remotelab.devices.backend import Backend
from remotelab.errors import DeviceFault
from remotelab.sim import chemistry
from remotelab.sim.clock import SimClock
from remotelab.sim.faults import Fault, FaultPlan
from remotelab.sim.world import World
from remotelab.version import __version__

GRIPPER = "gripper"
FLOOR = "floor"


class SimInstrument(Backend):
    """Base of the simulated instruments."""

    model: ClassVar[str] = "SIM"
    #: quantities that ``write`` accepts
    writable: ClassVar[tuple[str, ...]] = ()

    def __init__(self, world: World, name: str, **options: Any):
        if options:
            raise TypeError(f"{type(self).__name__} takes no option(s) {', '.join(options)}")
        self.world = world
        self.name = name
        self.clock: SimClock = world.clock
        self.faults = FaultPlan()
        self._stop = threading.Event()

    def identify(self) -> str:
        serial = zlib.crc32(self.name.encode()) % 100000
        return f"remotelab,{self.model},{serial:05d},{__version__}"

    # -- the Backend interface -----------------------------------------------------------
    def read(self, quantity: str) -> Any:
        reader = getattr(self, f"get_{quantity}", None)
        if reader is None:
            raise DeviceFault(self.name, f"{self.model} has no quantity {quantity!r}")
        return reader()

    def write(self, quantity: str, value: Any) -> None:
        if quantity not in self.writable:
            raise DeviceFault(self.name, f"{self.model} cannot set {quantity!r}")
        if self.faults.take(Fault.FAIL, action=quantity):
            raise DeviceFault(self.name, f"instrument error setting {quantity} (injected fault)")
        if self.faults.take(Fault.HANG, action=quantity):
            return  # accepted, but the instrument does nothing: it hangs
        getattr(self, f"set_{quantity}")(value)

    def run(self, action: str, **params: Any) -> Any:
        handler = getattr(self, f"do_{action}", None)
        if handler is None:
            raise DeviceFault(self.name, f"{self.model} cannot {action!r}")
        self._stop.clear()
        fault = self.faults.take(Fault.FAIL, Fault.HANG, action=action)
        if fault is Fault.FAIL:
            raise DeviceFault(self.name, f"instrument error during {action} (injected fault)")
        if fault is Fault.HANG:
            self._stop.wait()
            raise DeviceFault(self.name, f"{action} hung and was stopped")
        return handler(**params)

    def stop(self) -> None:
        self._stop.set()
        self.halt()

    def halt(self) -> None:
        """Instrument-specific part of a stop."""

    # -- helpers ---------------------------------------------------------------------------
    def busy(self, seconds: float, what: str = "operation", *, shared: bool = True) -> None:
        """Take ``seconds`` of clock time; raise if stopped meanwhile.

        Measurements pass ``shared=False``: their time does not move the shared clock.
        """
        if self.clock.wait(self._stop, seconds, shared=shared):
            raise DeviceFault(self.name, f"{what} stopped")

    def noise(self, sigma: float, size: int | None = None):
        return self.world.noise(self.name, sigma, size)

    def out_of_range(self) -> bool:
        return self.faults.take(Fault.OUT_OF_RANGE) is not None


class SimThermometer(SimInstrument):
    """A Pt100 probe in a thermal zone (option ``zone``)."""

    model = "SIM-THERMO-100"
    measure_time: ClassVar[float] = 0.5

    def __init__(self, world: World, name: str, zone: str = "heater"):
        super().__init__(world, name)
        self.zone = world.zone(zone)

    def do_measure(self) -> dict[str, float]:
        self.busy(self.measure_time, "measurement", shared=False)
        value = self.zone.temperature() + float(self.noise(0.01))
        return {"temperature": 9999.0 if self.out_of_range() else round(value, 4)}


class SimPHMeter(SimInstrument):
    """A pH electrode dipped in whatever vessel stands at ``station``."""

    model = "SIM-PH-7"
    measure_time: ClassVar[float] = 2.0

    def __init__(self, world: World, name: str, station: str = "titration"):
        super().__init__(world, name)
        self.station = station

    def do_measure(self) -> dict[str, float]:
        self.busy(self.measure_time, "measurement", shared=False)
        with self.world.lock:
            vessel = self.world.sample_at(self.station)
            value = chemistry.ph(vessel.composition) if vessel and vessel.volume_ml else 7.0
        value += float(self.noise(0.003))
        temperature = self.world.ambient + float(self.noise(0.05))
        if self.out_of_range():
            value = 15.7
        return {"ph": round(value, 4), "temperature": round(temperature, 2)}


class SimBalance(SimInstrument):
    """A balance weighing whatever stands at ``station`` (0.1 mg readability)."""

    model = "SIM-BAL-220"
    measure_time: ClassVar[float] = 2.0

    def __init__(self, world: World, name: str, station: str = "balance"):
        super().__init__(world, name)
        self.station = station
        self.tare_g = 0.0

    def _gross(self) -> float:
        with self.world.lock:
            vessel = self.world.sample_at(self.station)
            return vessel.mass_g if vessel else 0.0

    def do_measure(self) -> dict[str, float]:
        self.busy(self.measure_time, "measurement", shared=False)
        value = self._gross() - self.tare_g + float(self.noise(0.00005))
        return {"mass": 999.0 if self.out_of_range() else round(value, 5)}

    def do_tare(self) -> None:
        self.busy(1.0, "tare")
        self.tare_g = self._gross()


class SimSpectrometer(SimInstrument):
    """A UV-Vis spectrometer measuring the vial at ``station`` (1 cm path)."""

    model = "SIM-UVVIS-2"
    measure_time: ClassVar[float] = 1.0

    def __init__(
        self,
        world: World,
        name: str,
        station: str = "spectrometer",
        path_cm: float = 1.0,
        well: str | None = None,
    ):
        super().__init__(world, name)
        self.station, self.path_cm = station, float(path_cm)
        #: a labware well the spectrometer looks into instead (a dip probe), if set
        self.well = well

    def get_wavelength(self) -> np.ndarray:
        return chemistry.WAVELENGTHS.copy()

    def do_measure(self) -> dict[str, np.ndarray]:
        self.busy(self.measure_time, "measurement", shared=False)
        with self.world.lock:
            if self.well is not None:
                well = self.world.wells.get(self.well)
                composition = dict(well.composition) if well and well.volume_ul else {}
            else:
                vessel = self.world.sample_at(self.station)
                composition = dict(vessel.composition) if vessel else {}
        spectrum = chemistry.absorbance(composition, self.path_cm)
        spectrum = spectrum + self.noise(0.001, spectrum.size)
        if self.out_of_range():
            spectrum = np.full_like(spectrum, 9.9)
        return {"absorbance": np.round(spectrum, 5)}


class SimTemperatureController(SimInstrument):
    """A heater with its own probe, driving a thermal zone (option ``zone``)."""

    model = "SIM-TC-150"
    writable = ("setpoint", "ramp_rate")

    def __init__(self, world: World, name: str, zone: str = "heater", tau: float = 20.0):
        super().__init__(world, name)
        self.zone = world.zone(zone)
        self.zone.tau = float(tau)

    def get_temperature(self) -> float:
        if self.out_of_range():
            return 9999.0
        return round(self.zone.temperature() + float(self.noise(0.01)), 4)

    def get_setpoint(self) -> float:
        return self.zone.setpoint

    def get_ramp_rate(self) -> float:
        return self.zone.ramp_rate

    def set_setpoint(self, value: float) -> None:
        self.zone.set(float(value))

    def set_ramp_rate(self, value: float) -> None:
        self.zone.ramp_rate = float(value)

    def halt(self) -> None:
        self.zone.hold()


class SimStirrer(SimInstrument):
    """A magnetic stirrer that accelerates at ``accel`` rpm/s."""

    model = "SIM-STIR-15"
    writable = ("setpoint",)

    def __init__(self, world: World, name: str, accel: float = 300.0):
        super().__init__(world, name)
        self.accel = float(accel)
        self._t0, self._speed0, self._setpoint = self.clock.time(), 0.0, 0.0

    def _speed(self) -> float:
        dt = max(self.clock.time() - self._t0, 0.0)
        gap = self._setpoint - self._speed0
        return (
            self._setpoint
            if abs(gap) <= self.accel * dt
            else (self._speed0 + np.sign(gap) * self.accel * dt)
        )

    def get_speed(self) -> float:
        if self.out_of_range():
            return 9999.0
        return round(max(self._speed() + float(self.noise(0.5)), 0.0), 1)

    def get_setpoint(self) -> float:
        return self._setpoint

    def set_setpoint(self, value: float) -> None:
        self._speed0, self._t0, self._setpoint = self._speed(), self.clock.time(), float(value)

    def halt(self) -> None:
        self.set_setpoint(0.0)


class SimSyringePump(SimInstrument):
    """A syringe pump of ``capacity_ml`` filled with ``titrant`` (mol/L), feeding ``outlet``."""

    model = "SIM-PUMP-50"
    writable = ("rate",)

    def __init__(
        self,
        world: World,
        name: str,
        outlet: str = "titration",
        capacity_ml: float = 50.0,
        titrant: dict[str, float] | None = None,
    ):
        super().__init__(world, name)
        self.outlet, self.capacity = outlet, float(capacity_ml)
        self.titrant = dict(titrant if titrant is not None else {"naoh": 0.1})
        for species in self.titrant:
            chemistry.species(species)
        self.remaining, self.dispensed, self.rate = self.capacity, 0.0, 5.0

    def get_dispensed(self) -> float:
        return round(self.dispensed, 6)

    def get_remaining(self) -> float:
        return round(self.remaining, 6)

    def get_rate(self) -> float:
        return self.rate

    def get_capacity(self) -> float:
        return self.capacity

    def set_rate(self, value: float) -> None:
        self.rate = float(value)

    def run(self, action: str, **params: Any) -> Any:
        if action == "dispense" and self.faults.take(Fault.FAIL, action=action):
            half = min(float(params["volume"]), self.remaining) / 2
            self.clock.sleep(half / self.rate * 60.0)
            self._deliver(half)
            raise DeviceFault(self.name, f"pump stalled after {half:.4g} mL (injected fault)")
        return super().run(action, **params)

    def _deliver(self, volume: float) -> None:
        self.remaining -= volume
        self.dispensed += volume
        self.world.add_liquid(self.outlet, self.titrant, volume)

    def do_dispense(self, volume: float) -> None:
        volume = float(volume)
        if volume > self.remaining + 1e-9:
            raise DeviceFault(self.name, f"only {self.remaining:.4g} mL left, {volume:.4g} asked")
        start = self.clock.time()
        duration = volume / self.rate * 60.0
        if self.clock.wait(self._stop, duration):
            done = min(volume, (self.clock.time() - start) / 60.0 * self.rate)
            self._deliver(done)
            raise DeviceFault(self.name, f"dispense stopped after {done:.4g} of {volume:.4g} mL")
        self._deliver(volume)

    def do_refill(self) -> None:
        self.busy((self.capacity - self.remaining) / 20.0 * 60.0 + 5.0, "refill")
        self.remaining, self.dispensed = self.capacity, 0.0


class SimArm(SimInstrument):
    """A sample-handling arm: moves take 2 s within a rack and 4 s elsewhere; grip 1 s."""

    model = "SIM-ARM-6"

    def __init__(self, world: World, name: str, travel_s: float = 4.0, grip_s: float = 1.0):
        super().__init__(world, name)
        self.travel_s, self.grip_s = float(travel_s), float(grip_s)
        self.location = "home"
        self.holding: str | None = None

    def get_location(self) -> str:
        return self.location

    def get_holding(self) -> bool:
        return self.holding is not None

    def do_goto(self, location: str) -> None:
        if location == self.location:
            return
        same_rack = "/" in location and location.split("/")[0] == self.location.split("/")[0]
        duration = self.travel_s / 2 if same_rack else self.travel_s
        origin, self.location = self.location, "moving"
        if self.holding is not None and self.faults.take(Fault.DROP, action="goto"):
            self.clock.sleep(duration / 2)
            with self.world.lock:
                self.world.samples[self.holding].location = FLOOR
            dropped, self.holding = self.holding, None
            self.location = "unknown"
            raise DeviceFault(
                self.name, f"dropped sample {dropped} between {origin} and {location}"
            )
        if self.clock.wait(self._stop, duration):
            self.location = "unknown"
            raise DeviceFault(self.name, f"stopped between {origin} and {location}")
        self.location = location

    def do_pick(self) -> None:
        self.busy(self.grip_s, "pick")
        with self.world.lock:
            if self.holding is not None:
                raise DeviceFault(self.name, f"already holding {self.holding}")
            sample = self.world.sample_at(self.location)
            if sample is None:
                raise DeviceFault(self.name, f"nothing to pick at {self.location}")
            sample.location, self.holding = GRIPPER, sample.id

    def do_place(self) -> None:
        self.busy(self.grip_s, "place")
        with self.world.lock:
            if self.holding is None:
                raise DeviceFault(self.name, "nothing in the gripper to place")
            if self.world.sample_at(self.location) is not None:
                raise DeviceFault(self.name, f"{self.location} is occupied")
            self.world.samples[self.holding].location = self.location
            self.holding = None


class SimLiquidHandler(SimInstrument):
    """A single-channel pipette over the world's wells (1000 µL tip, 500 µL/s)."""

    model = "SIM-LH-1"

    def __init__(
        self,
        world: World,
        name: str,
        flow_ul_s: float = 500.0,
        heated: dict[str, str] | None = None,
    ):
        super().__init__(world, name)
        self.flow = float(flow_ul_s)
        #: wells that sit in a heated block (well → thermal zone): reagents react there
        for well, zone in (heated or {}).items():
            if well not in world.wells:
                raise TypeError(f"heated well {well!r} is not a labware well")
            world.heat_well(well, zone)
        self.tip_ul = 0.0
        self.tip_composition: dict[str, float] = {}
        self.waste_ul = 0.0

    def get_tip_volume(self) -> float:
        return round(self.tip_ul, 4)

    def _well(self, well: str):
        if well not in self.world.wells:
            raise DeviceFault(self.name, f"no labware well {well!r}")
        return self.world.wells[well]

    def do_aspirate(self, well: str, volume: float) -> None:
        target = self._well(well)
        self.busy(2.0 + volume / self.flow, "aspirate")
        with self.world.lock:
            if target.volume_ul + 1e-9 < volume:
                raise DeviceFault(
                    self.name, f"{well} holds {target.volume_ul:g} uL, not {volume:g}"
                )
            self.tip_composition = chemistry.mix(
                self.tip_composition, self.tip_ul, target.composition, volume
            )
            target.volume_ul -= volume
            self.tip_ul += volume

    def do_dispense(self, well: str, volume: float) -> None:
        target = self._well(well)
        self.busy(2.0 + volume / self.flow, "dispense")
        with self.world.lock:
            if self.tip_ul + 1e-9 < volume:
                raise DeviceFault(self.name, f"the tip holds {self.tip_ul:g} uL, not {volume:g}")
            if target.volume_ul + volume > target.capacity_ul + 1e-9:
                raise DeviceFault(self.name, f"{well} would overflow")
            target.composition = chemistry.mix(
                target.composition, target.volume_ul, self.tip_composition, volume
            )
            target.volume_ul += volume
            self.tip_ul -= volume
            self.world.react(well)

    def do_eject(self) -> None:
        self.busy(1.0, "eject")
        self.waste_ul += self.tip_ul
        self.tip_ul, self.tip_composition = 0.0, {}


SIM_INSTRUMENTS: dict[str, type[SimInstrument]] = {
    "Thermometer": SimThermometer,
    "PHMeter": SimPHMeter,
    "Balance": SimBalance,
    "Spectrometer": SimSpectrometer,
    "TemperatureController": SimTemperatureController,
    "SyringePump": SimSyringePump,
    "Stirrer": SimStirrer,
    "SampleArm": SimArm,
    "LiquidHandler": SimLiquidHandler,
}
