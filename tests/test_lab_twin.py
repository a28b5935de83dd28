"""The simulated twin of a lab file (``load_lab(path, simulate=True)``): the same lab with
every device on the in-process simulator of its class, whatever backend the file names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from bluesky import RunEngine
from typer.testing import CliRunner

from remotelab.cli import app
from remotelab.devices.serial import SerialBackend
from remotelab.errors import LabFileError
from remotelab.lab import load_lab, shipped_lab_text
from remotelab.plans import registry_for
from remotelab.plans.holds import install_local_holds
from remotelab.sim import SimInstrument
from remotelab.sim.instruments import SIM_INSTRUMENTS
from test_serial_lab import assert_same, bench_plan

SPEED = 2000.0
runner = CliRunner()


def bench(directory: Path) -> Path:
    """The shipped serial lab as a real bench has it: hardware ports, no simulators; the
    twin learns its simulators' options from ``twin:``."""
    data = yaml.safe_load(shipped_lab_text("serial-sim"))
    for name, device in data["devices"].items():
        simulate = device["options"]["simulate"]
        device["options"] = {"timeout": 2.0}  # a serial driver option, still checked
        device["port"] = "/dev/ttyUSB7" if name == "heater" else f"/dev/ttyREMOTELAB-{name}"
        if isinstance(simulate, dict):
            device["twin"] = simulate
    path = directory / "bench.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def nothing_served(monkeypatch):
    """Fail the test if anything starts a simulator server or opens a serial line."""

    def refuse(*args, **kwargs):
        raise AssertionError("the twin opened a simulator server or a serial line")

    monkeypatch.setattr("remotelab.sim.server.serve_instrument", refuse)
    monkeypatch.setattr("remotelab.devices.serial.make_serial_backend", refuse)


def run_on(lab) -> tuple[list[dict], dict]:
    events: list[dict] = []
    engine = RunEngine({}, context_managers=[])
    engine.subscribe(lambda name, doc: events.append(doc["data"]) if name == "event" else None)
    engine(bench_plan(lab))
    return events, {"samples": lab.tracker.snapshot(), "clock": lab.clock.time()}


def test_the_twin_of_the_serial_lab_opens_nothing_and_reads_as_the_sim_lab(nothing_served):
    with load_lab("serial-sim", seed=7, speed=SPEED, simulate=True) as twin:
        assert twin.twin and twin.simulators == []
        assert all(isinstance(d.backend, SimInstrument) for d in twin.devices.values())
        assert not any(isinstance(d.backend, SerialBackend) for d in twin.devices.values())
        assert twin.describe()["twin"] is True
        assert twin["probe"].backend.well == "reactor/1"  # options.simulate reached the twin
        twin_events, twin_state = run_on(twin)
    with load_lab("sim", seed=7, speed=SPEED) as sim:
        assert not sim.twin
        sim_events, sim_state = run_on(sim)
    assert len(twin_events) == len(sim_events) == 14
    for a, b in zip(twin_events, sim_events, strict=True):
        assert_same(a, b)
    assert twin_state == sim_state


def test_a_lab_on_real_ports_runs_a_plan_as_its_twin(tmp_path, nothing_served):
    with pytest.raises(AssertionError, match="opened a simulator server or a serial line"):
        load_lab(bench(tmp_path))  # the hardware lab would open its ports
    with load_lab(bench(tmp_path), speed=SPEED, simulate=True) as lab:
        assert lab["heater"].backend.zone is lab.world.zone("heater")  # from twin: {zone}
        registry = registry_for(lab)
        validated = registry.validate(
            "temperature_ramp", {"setpoints": [31.0], "detectors": ["thermometer"]}, lab=lab
        )
        engine = RunEngine({}, context_managers=[])
        install_local_holds(engine)
        readings: list[dict] = []
        engine.subscribe(lambda n, d: readings.append(d["data"]) if n == "event" else None)
        engine(registry.build(validated, lab))
        assert abs(readings[0]["thermometer_temperature"] - 31.0) < 0.5
        assert lab.unsafe_devices() == {}  # the ramp ends at the heater's safe setpoint


def test_the_twin_still_checks_the_file(tmp_path, monkeypatch):
    data = yaml.safe_load(bench(tmp_path).read_text())
    data["devices"]["heater"]["twin"] = {"zon": "heater"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(LabFileError, match=r"devices.heater.twin.*unknown twin option.*zon"):
        load_lab(bad, simulate=True)
    data["devices"]["heater"]["twin"] = {}
    data["devices"]["heater"]["options"] = {"baud": 9600}
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(LabFileError, match=r"devices.heater.options: unknown serial option"):
        load_lab(bad, simulate=True)
    monkeypatch.delitem(SIM_INSTRUMENTS, "Balance")
    data = yaml.safe_load(bench(tmp_path).read_text())
    del data["devices"]["balance"]["twin"]
    bad.write_text(yaml.safe_dump(data))
    for connect in (True, False):
        with pytest.raises(
            LabFileError,
            match=r"devices.balance: class Balance has no simulator; the simulated twin "
            "cannot be built",
        ):
            load_lab(bad, simulate=True, connect=connect)
    load_lab(bad, connect=False).close()  # the hardware lab needs no simulator
    data["devices"]["balance"]["twin"] = {"station": "balance"}
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(LabFileError, match=r"devices.balance.twin .*Balance has no simulator"):
        load_lab(bad, connect=False)


def test_unsafe_devices_reads_without_changing_anything():
    with load_lab(speed=SPEED, simulate=True) as lab:
        lab.safe_state()
        assert lab.unsafe_devices() == {}
        lab["heater"].set(50).wait(10)
        lab["stirrer"].set(300).wait(10)
        found = lab.unsafe_devices()
        assert set(found) == {"heater", "stirrer"}
        assert "its safe state 25 degC" in found["heater"]
        assert lab.world.zone("heater").setpoint == 50  # nothing was changed
        assert lab.unsafe_devices(devices=["stirrer"]).keys() == {"stirrer"}


def test_simulate_on_the_command_line(tmp_path, nothing_served):
    path = str(bench(tmp_path))
    args = ["run", "measure", "--lab", path, "--speed", "2000", "--no-store", "--json"]
    result = runner.invoke(app, [*args, "-p", "detectors=thermometer", "--simulate"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["outcome"] == "success" and len(out["events"]) == 3
    shown = runner.invoke(app, ["lab", "show", "--lab", path, "--simulate", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["twin"] is True
    plain = runner.invoke(app, ["devices", "--lab", path])
    twin = runner.invoke(app, ["devices", "--lab", path, "--simulate"], terminal_width=200)
    assert "simulated twin" in twin.output and "simulated twin" not in plain.output
