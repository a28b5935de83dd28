"""The simulated lab's physical world: samples, liquids, heat, and the noise of measuring them.

Everything a simulated instrument reports comes from here, so the direct sim
backends and the simulated serial instruments see one and the same world.
Given the same seed and the same sequence of operations the world gives the
same readings.
"""

from __future__ import annotations

import math
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from remotelab.sim import chemistry
from remotelab.sim.clock import SimClock

AMBIENT = 22.0


@dataclass
class SimSample:
    """A vial: its hidden composition (mol/L), liquid volume (mL), empty mass (g), location."""

    id: str
    location: str
    composition: dict[str, float] = field(default_factory=dict)
    volume_ml: float = 0.0
    container_g: float = 10.0

    @property
    def mass_g(self) -> float:
        return self.container_g + self.volume_ml * chemistry.density(self.composition)


@dataclass
class Well:
    """A labware well: liquid volume (µL), capacity (µL), composition (mol/L)."""

    volume_ul: float
    capacity_ul: float
    composition: dict[str, float] = field(default_factory=dict)


class ThermalZone:
    """A heated block: the setpoint ramps at ``ramp_rate`` °C/min and the block follows
    it with a first-order lag of time constant ``tau`` seconds (solved exactly)."""

    def __init__(self, clock: SimClock, ambient: float = AMBIENT, tau: float = 20.0):
        self.clock, self.tau = clock, tau
        self.ramp_rate = 10.0  # °C/min
        self._lock = threading.Lock()
        # segments: (t0, temperature at t0, target at t0, setpoint, rate °C/s)
        self._segments: list[tuple[float, float, float, float, float]] = [
            (clock.time(), ambient, ambient, ambient, 0.0)
        ]

    def _state(self, t: float) -> tuple[float, float]:
        """(temperature, ramping target) at clock time ``t``."""
        seg = self._segments[0]
        for candidate in self._segments:
            if candidate[0] <= t:
                seg = candidate
        t0, temp0, target0, setpoint, rate = seg
        dt = max(t - t0, 0.0)
        tau = self.tau
        ramp_time = abs(setpoint - target0) / rate if rate > 0 else 0.0
        r = math.copysign(rate, setpoint - target0)
        t1 = min(dt, ramp_time)
        # while the target ramps linearly: T = a + r(t − τ) + (T0 − a + rτ)e^(−t/τ)
        temp1 = target0 + r * (t1 - tau) + (temp0 - target0 + r * tau) * math.exp(-t1 / tau)
        target1 = target0 + r * t1
        if dt <= ramp_time:
            return temp1, target1
        rest = dt - ramp_time
        return setpoint + (temp1 - setpoint) * math.exp(-rest / tau), setpoint

    def temperature(self) -> float:
        with self._lock:
            return self._state(self.clock.time())[0]

    @property
    def setpoint(self) -> float:
        return self._segments[-1][3]

    def set(self, setpoint: float) -> None:
        with self._lock:
            now = self.clock.time()
            temp, target = self._state(now)
            self._segments = [s for s in self._segments if s[0] <= now]
            self._segments.append((now, temp, target, float(setpoint), self.ramp_rate / 60.0))

    def hold(self) -> None:
        """Stop ramping: the setpoint becomes the present ramp target."""
        with self._lock:
            now = self.clock.time()
            temp, target = self._state(now)
            self._segments.append((now, temp, target, target, self.ramp_rate / 60.0))


def stream_seed(seed: int, name: str) -> list[int]:
    return [int(seed), zlib.crc32(name.encode())]


class World:
    """The simulated lab's physical state, shared by every simulated instrument."""

    def __init__(self, seed: int = 0, clock: SimClock | None = None, ambient: float = AMBIENT):
        self.seed = int(seed)
        self.clock = clock or SimClock()
        self.ambient = ambient
        self.samples: dict[str, SimSample] = {}
        self.wells: dict[str, Well] = {}
        self.zones: dict[str, ThermalZone] = {}
        self.spilled_ml = 0.0
        #: the reaction the heated wells run; its optimum is hidden, drawn from the seed
        self.reaction = chemistry.Reaction.hidden(self.seed)
        #: well → thermal zone, for wells that sit in a heated block
        self.heated_wells: dict[str, str] = {}
        self.lock = threading.RLock()
        self._rngs: dict[str, np.random.Generator] = {}

    def rng(self, stream: str) -> np.random.Generator:
        """The random stream of one instrument: independent of every other stream."""
        with self.lock:
            if stream not in self._rngs:
                self._rngs[stream] = np.random.default_rng(stream_seed(self.seed, stream))
            return self._rngs[stream]

    def noise(self, stream: str, sigma: float, size: int | None = None):
        with self.lock:
            return self.rng(stream).normal(0.0, sigma, size)

    def zone(self, name: str) -> ThermalZone:
        with self.lock:
            if name not in self.zones:
                self.zones[name] = ThermalZone(self.clock, self.ambient)
            return self.zones[name]

    def add_sample(
        self,
        sample_id: str,
        location: str,
        composition: Mapping[str, float] | None = None,
        volume_ml: float = 0.0,
        container_g: float = 10.0,
    ) -> SimSample:
        for name in composition or {}:
            chemistry.species(name)
        sample = SimSample(
            sample_id, location, dict(composition or {}), float(volume_ml), float(container_g)
        )
        self.samples[sample_id] = sample
        return sample

    def sample_at(self, location: str) -> SimSample | None:
        with self.lock:
            for sample in self.samples.values():
                if sample.location == location:
                    return sample
            return None

    def add_liquid(self, location: str, composition: Mapping[str, float], volume_ml: float) -> None:
        """Pour liquid into whatever vessel stands at ``location`` (or spill it)."""
        with self.lock:
            vessel = self.sample_at(location)
            if vessel is None:
                self.spilled_ml += volume_ml
                return
            vessel.composition = chemistry.mix(
                vessel.composition, vessel.volume_ml, composition, volume_ml
            )
            vessel.volume_ml += volume_ml

    def add_well(
        self,
        name: str,
        volume_ul: float,
        capacity_ul: float,
        composition: Mapping[str, float] | None = None,
    ) -> Well:
        well = Well(float(volume_ul), float(capacity_ul), dict(composition or {}))
        self.wells[name] = well
        return well

    def heat_well(self, well: str, zone: str) -> None:
        """Put ``well`` in the thermal zone ``zone``: its reagents react at that temperature."""
        self.zone(zone)
        self.heated_wells[well] = zone

    def react(self, well: str) -> None:
        """Let the reagents in a heated ``well`` react at the zone's present temperature."""
        with self.lock:
            zone = self.heated_wells.get(well)
            target = self.wells.get(well)
            if zone is None or target is None:
                return
            temperature = self.zone(zone).temperature()
            target.composition = self.reaction.react(target.composition, temperature)
