"""The serial simulated lab: every device through its serial driver to a simulated instrument."""

from __future__ import annotations

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import numpy as np
import pytest
from bluesky import RunEngine

from remotelab.devices.serial import SerialBackend
from remotelab.errors import LabFileError
from remotelab.lab import load_lab, parse_lab, shipped_lab_text

SPEED = 2000.0


def bench_plan(lab):
    """A plan that touches every device: heat, stir, move samples, measure, dispense, pipette."""
    heater, thermometer = lab["heater"], lab["thermometer"]
    yield from bps.mv(heater, 32)
    yield from bp.count([thermometer, heater], num=3)
    yield from bps.mv(lab["stirrer"], 300)
    yield from bp.count([lab["stirrer"]], num=2)
    arm = lab["arm"]
    yield from bps.mv(arm, ("rack_a/4", "spectrometer"))
    yield from bp.count([lab["spectrometer"]], num=2)
    yield from bps.mv(arm, ("spectrometer", "rack_a/4"))
    yield from bps.mv(arm, ("rack_a/1", "balance"))
    yield from bp.count([lab["balance"]], num=2)
    yield from bps.mv(arm, ("balance", "rack_a/1"))
    pump, ph = lab["pump"], lab["ph_meter"]
    yield from bp.count([ph, pump])
    yield from bps.mv(pump, 1.5)
    yield from bp.count([ph, pump], num=2)
    yield from bps.mv(
        lab["pipette"], {"source": "reagent_a/1", "destination": "plate/1", "volume": 250}
    )
    yield from bp.count([lab["pipette"]])
    for reagent in ("reagent_a/1", "reagent_b/1"):  # they react in the heated reactor vial
        yield from bps.mv(
            lab["pipette"], {"source": reagent, "destination": "reactor/1", "volume": 300}
        )
    yield from bp.count([lab["probe"]])
    yield from bps.mv(lab["stirrer"], 0)


def run_bench(lab_name: str) -> tuple[list[dict], dict]:
    events: list[dict] = []
    with load_lab(lab_name, seed=7, speed=SPEED) as lab:
        engine = RunEngine({}, context_managers=[])
        engine.subscribe(lambda name, doc: events.append(doc["data"]) if name == "event" else None)
        engine(bench_plan(lab))
        state = {
            "samples": lab.tracker.snapshot(),
            "wells": {w: v[0] for w, v in lab["pipette"].wells.items()},
            "clock": lab.clock.time(),
            "world": {
                s.id: (s.location, s.volume_ml, s.composition) for s in lab.world.samples.values()
            },
            "well_compositions": {w: v.composition for w, v in lab.world.wells.items()},
        }
    return events, state


def assert_same(a, b) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray | list):
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)
        else:
            assert a[key] == b[key], key


def test_same_plan_same_seed_gives_same_readings_on_sim_and_serial_sim():
    direct, direct_state = run_bench("sim")
    serial, serial_state = run_bench("serial-sim")
    assert len(direct) == len(serial) == 14
    for a, b in zip(direct, serial, strict=True):
        assert_same(a, b)
    assert direct_state == serial_state
    # the readings really came from a measuring world: the heater settled, the pump dispensed
    assert abs(direct[2]["heater_temperature"] - 32) < 0.3
    assert [e["pump_dispensed"] for e in direct if "pump_dispensed" in e] == [0.0, 1.5, 1.5]
    assert direct[-1]["probe_peak_absorbance"] > 0.01  # the reactor's product absorbs


def test_serial_sim_lab_drives_every_device_through_a_serial_backend_on_a_pty():
    with load_lab("serial-sim", speed=SPEED) as lab:
        assert len(lab.simulators) == len(lab.devices) == 10
        for name, device in lab.devices.items():
            assert isinstance(device.backend, SerialBackend), name
            server = next(s for s in lab.simulators if s.instrument.name == name)
            assert device.backend.port == server.port
            assert server.pty_path.startswith("/dev/pts/")
            assert device.identify() == server.instrument.identify()
        assert lab.describe()["devices"]["pump"]["backend"] == "serial"
        ports = [s.port for s in lab.simulators]
    # closing the lab stops its simulated instruments: the ports are gone
    import os

    assert not any(os.path.exists(p) for p in ports)


def test_simulated_serial_device_over_tcp_and_bad_options():
    text = shipped_lab_text("serial-sim").replace(
        "options: {simulate: {zone: heater}}\n    description: Pt100",
        "options: {simulate: {zone: heater, transport: tcp}, timeout: 0.5}\n    description: Pt100",
    )
    from remotelab.lab import Lab

    with Lab(parse_lab(text), speed=SPEED) as lab:
        assert lab["thermometer"].backend.port.startswith("socket://127.0.0.1:")
        assert lab["thermometer"].backend.transport.timeout == 0.5
        status = lab["thermometer"].trigger()
        status.wait(10)
        assert 15 < lab["thermometer"].temperature.get() < 30

    bad = shipped_lab_text("serial-sim").replace(
        "{simulate: true}\n    limits: {setpoint",
        "{simulate: true, speed_up: 3}\n    limits: {setpoint",
    )
    with pytest.raises(LabFileError, match=r"unknown serial option.*speed_up"):
        Lab(parse_lab(bad), speed=SPEED)


def wait_for(condition, what: str, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


def test_safe_state_mid_dispense_stops_the_pump_and_the_records_match_the_world():
    from remotelab.errors import DeviceFault

    with load_lab("serial-sim", speed=SPEED) as lab:
        pump = lab["pump"]
        server = next(s for s in lab.simulators if s.instrument.name == "pump")
        vial = lab.world.samples["T001"]
        before = vial.volume_ml
        pump.rate.put(1.0)  # 10 mL at 1 mL/min: 600 clock seconds
        status = pump.dispense(10.0)
        wait_for(lambda: server.handler.busy, "the pump to start")
        assert lab.safe_state()["pump"] == "safe"
        with pytest.raises(DeviceFault, match="dispense stopped after"):
            status.wait(10)
        assert not server.handler.busy
        dispensed = pump.dispensed.get()
        assert 0 < dispensed < 10
        assert dispensed == server.instrument.get_dispensed()
        assert vial.volume_ml == pytest.approx(before + dispensed, abs=1e-6)


def test_an_instrument_fault_reaches_the_device_through_the_serial_status():
    from remotelab.devices import LOST
    from remotelab.errors import DeviceFault
    from remotelab.sim import Fault

    with load_lab("serial-sim", speed=SPEED) as lab:
        arm = lab["arm"]
        server = next(s for s in lab.simulators if s.instrument.name == "arm")
        server.instrument.faults.arm(Fault.DROP)
        with pytest.raises(DeviceFault, match="dropped sample S001"):
            arm.set(("rack_a/1", "balance")).wait(10)
        # the arm's own sensors, read over the line, tell the tracker the vial is gone
        assert lab.tracker.where("S001") == LOST
        assert arm.location.get() == "unknown" and arm.holding.get() is False
        arm.go_safe().wait(10)
        assert server.instrument.location == "home"


def test_serial_sim_lab_describes_the_same_bench_as_the_sim_lab():
    sim = parse_lab(shipped_lab_text("sim"))
    serial = parse_lab(shipped_lab_text("serial-sim"))
    for part in ("locations", "samples", "labware", "simulation", "plans"):
        assert getattr(serial, part) == getattr(sim, part), part
    assert serial.devices.keys() == sim.devices.keys()
    for name, device in serial.devices.items():
        twin = sim.devices[name]
        assert device.backend == "serial" and twin.backend == "sim", name
        simulate = device.options["simulate"]
        assert (simulate if isinstance(simulate, dict) else {}) == twin.options, name
        for field in ("class_", "limits", "safe_state", "config", "timeout"):
            assert getattr(device, field) == getattr(twin, field), (name, field)
