"""A lab loaded without connecting (``connect=False``): it opens nothing, refuses every I/O
with a typed error, and validates and describes exactly as the connected lab does."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from remotelab.devices import OfflineBackend
from remotelab.errors import (
    Disconnected,
    LabFileError,
    LimitError,
    NotConnectedError,
    PlanValidationError,
    SafeStateError,
)
from remotelab.lab import load_lab, shipped_lab_text
from remotelab.plans.registry import registry_for


def absent_serial_lab(directory: Path) -> Path:
    """The shipped serial lab as a real bench would have it (no simulators), on serial
    ports that do not exist."""
    data = yaml.safe_load(shipped_lab_text("serial-sim"))
    for name, device in data["devices"].items():
        device["options"] = {}
        device["port"] = f"/dev/ttyREMOTELAB-absent-{name}"
    data.pop("simulation")
    path = directory / "bench.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


#: submissions and, for each, None (accepted) or the problems the registry names
SUBMISSIONS = [
    ("measure", {"detectors": ["thermometer", "ph_meter"], "num": 2}),
    ("measure", {"detectors": ["heater"], "num": 2}),
    ("measure", {"detectors": ["nope"], "num": 0}),
    ("scan", {"detectors": ["thermometer"], "motor": "heater", "start": 20, "stop": 99}),
    ("temperature_ramp", {"setpoints": [30, 200], "heater": "heater"}),
    ("measure_samples", {"samples": ["S001", "S999"], "station": "spectrometer"}),
    ("titration", {"sample": "T001", "max_volume": 10, "step": 0.5}),
]


def outcomes(lab) -> list:
    registry = registry_for(lab)
    out = []
    for plan, params in SUBMISSIONS:
        try:
            validated = registry.validate(plan, params, lab=lab, role="researcher")
            out.append(("ok", validated.params, validated.devices, validated.sample_ids))
        except PlanValidationError as exc:
            out.append(("refused", exc.errors))
    return out


def test_a_lab_on_absent_ports_loads_without_connecting_and_validates_like_the_sim_lab(tmp_path):
    path = absent_serial_lab(tmp_path)
    with pytest.raises(Disconnected, match="ttyREMOTELAB-absent"):
        load_lab(path)  # connecting would open the ports (and fight the worker for them)
    offline = load_lab(path, connect=False)
    assert not offline.connected and offline.world is None and offline.simulators == []
    assert all(isinstance(d.backend, OfflineBackend) for d in offline.devices.values())
    with load_lab(speed=1000) as sim:
        assert outcomes(offline) == outcomes(sim)
        assert any(o[0] == "refused" for o in outcomes(sim))
        assert any(o[0] == "ok" for o in outcomes(sim))
        described, live = offline.describe(), sim.describe()
        for name, device in live["devices"].items():
            assert described["devices"][name] == {**device, "backend": "serial"}
        assert described["samples"] == live["samples"]
        assert not described["simulated"] and live["simulated"]


def test_the_offline_sim_lab_describes_itself_as_the_connected_one():
    with load_lab(speed=1000) as live:
        assert load_lab(connect=False).describe() == live.describe()
    # the serial simulated lab starts no simulator when it is not connected
    offline = load_lab("serial-sim", connect=False)
    assert offline.simulators == [] and offline.world is None and offline.simulated


def test_every_io_on_an_offline_lab_is_refused_with_a_typed_error(tmp_path):
    lab = load_lab(absent_serial_lab(tmp_path), connect=False)
    heater, thermometer, arm = lab["heater"], lab["thermometer"], lab["arm"]
    with pytest.raises(NotConnectedError, match=r"heater: cannot read temperature.*worker"):
        heater.temperature.get()
    with pytest.raises(NotConnectedError, match="heater: cannot write setpoint"):
        heater.set(30).wait(5)
    with pytest.raises(NotConnectedError, match="thermometer: cannot run measure"):
        thermometer.trigger().wait(5)
    with pytest.raises(NotConnectedError, match="arm: cannot identify"):
        arm.identify()
    with pytest.raises(NotConnectedError, match="cannot stop"):
        arm.stop()
    assert set(lab.stop()) == set(lab.devices)  # each device's stop refused, none silently
    with pytest.raises(SafeStateError) as err:
        lab.safe_state(timeout=5)
    assert {"heater", "stirrer", "arm"} <= set(err.value.failures)
    assert all("without connecting" in why for why in err.value.failures.values())
    # limits still apply before anything would be attempted
    with pytest.raises(LimitError, match="outside the soft limits"):
        heater.set(500)
    lab.close()  # nothing to release


def test_an_offline_lab_still_checks_what_the_file_says(tmp_path):
    data = yaml.safe_load(absent_serial_lab(tmp_path).read_text())
    data["devices"]["heater"]["options"] = {"baud": 9600}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(LabFileError, match=r"devices.heater.options: unknown serial option"):
        load_lab(bad, connect=False)
    data["devices"]["heater"]["options"] = {}
    data["devices"]["heater"]["config"] = {"ramp_rate": 99}
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(LimitError, match=r"ramp_rate 99 .*outside the soft limits"):
        load_lab(bad, connect=False)
    data["devices"]["heater"]["config"] = {"speed": 1}
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(LabFileError, match="unknown configuration key 'speed'"):
        load_lab(bad, connect=False)
