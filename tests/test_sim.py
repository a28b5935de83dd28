"""The simulated world: repeatable by seed, independent of the clock speed, physically sensible."""

from __future__ import annotations

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import numpy as np
import pytest
from bluesky import RunEngine

from remotelab.lab import load_lab
from remotelab.sim import SimClock, chemistry

SENSORS = ["thermometer", "ph_meter", "balance", "spectrometer"]


def session(seed: int, speed: float) -> tuple[list[dict], float]:
    """A varied sequence of plans; returns every event's data and the clock time it took."""
    with load_lab(seed=seed, speed=speed) as lab:
        RE = RunEngine({}, context_managers=[])
        data: list[dict] = []
        RE.subscribe(lambda name, doc: data.append(doc["data"]) if name == "event" else None)
        sensors = [lab[n] for n in SENSORS]
        RE(bp.count(sensors))
        RE(bps.mv(lab["heater"], 45.0))
        RE(bp.count([lab["thermometer"], lab["heater"]], num=3))
        RE(bps.mv(lab["arm"], ("rack_a/4", "spectrometer")))
        RE(bps.mv(lab["pump"], 5.0, lab["stirrer"], 500.0))
        RE(
            bps.mv(
                lab["pipette"], {"source": "reagent_a/1", "destination": "plate/1", "volume": 250}
            )
        )
        RE(bp.scan(sensors, lab["heater"], 40.0, 30.0, 3))
        RE(bp.count([*sensors, lab["pump"], lab["stirrer"], lab["arm"], lab["pipette"]]))
        return data, lab.clock.time()


def plain(values: dict) -> dict:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in values.items()}


def test_same_seed_same_readings_at_any_speed():
    slow, slow_clock = session(seed=7, speed=300)
    fast, fast_clock = session(seed=7, speed=5000)
    assert len(slow) == len(fast) == 1 + 3 + 3 + 1
    assert [plain(d) for d in slow] == [plain(d) for d in fast]
    assert slow_clock == fast_clock  # the same simulated time passed


def test_another_seed_gives_other_noise():
    a, _ = session(seed=7, speed=5000)
    b, _ = session(seed=8, speed=5000)
    assert a[0]["thermometer_temperature"] != b[0]["thermometer_temperature"]
    # ... but the same physics
    assert a[0]["thermometer_temperature"] == pytest.approx(
        b[0]["thermometer_temperature"], abs=0.1
    )


def test_speed_factor_scales_wall_time_only():
    for speed in (1.0, 60.0, 5000.0):
        clock = SimClock(speed=speed)
        assert clock.wall(120.0) == pytest.approx(120.0 / speed)
        clock.sleep(0.5 * speed / 1000)  # a millisecond of wall time at any speed
        assert clock.time() == pytest.approx(0.5 * speed / 1000)
    with pytest.raises(ValueError, match="positive"):
        SimClock(speed=0)


def test_spectrum_follows_beer_lambert(lab, RE):
    RE(bps.mv(lab["arm"], ("rack_a/3", "spectrometer")))
    RE(bp.count([lab["spectrometer"]]))
    spectrum = np.asarray(lab["spectrometer"].absorbance.get())
    expected = chemistry.absorbance(lab.world.samples["S003"].composition)
    assert np.abs(spectrum - expected).max() < 0.01  # noise σ = 0.001 AU
    assert lab["spectrometer"].peak_wavelength.get() == pytest.approx(630.0, abs=2.0)
    assert lab["spectrometer"].peak_absorbance.get() == pytest.approx(130_000 * 4e-6, rel=0.02)


def test_ph_follows_the_titration_model(lab):
    beaker = lab.world.samples["T001"]
    acid = beaker.composition["acetic_acid"]
    equivalence_ml = acid * beaker.volume_ml / 0.1
    start = chemistry.ph(beaker.composition)
    assert 2.5 < start < 3.2  # a weak acid near 0.1 M
    half = chemistry.ph(chemistry.mix(beaker.composition, 20.0, {"naoh": 0.1}, equivalence_ml / 2))
    assert half == pytest.approx(4.76, abs=0.05)  # pH = pKa at half-equivalence
    past = chemistry.ph(
        chemistry.mix(beaker.composition, 20.0, {"naoh": 0.1}, equivalence_ml * 1.5)
    )
    assert past > 11.5


def test_temperature_lags_its_setpoint(lab):
    zone, heater = lab.world.zones["heater"], lab["heater"]
    heater.ramp_rate.put(20.0)
    zone.set(80.0)
    lab.clock.sleep(60.0)  # the ramp target is at 42 °C after a minute
    assert 22.0 < zone.temperature() < 42.0
    lab.clock.sleep(600.0)
    assert zone.temperature() == pytest.approx(80.0, abs=0.01)
