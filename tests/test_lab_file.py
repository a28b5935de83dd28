"""Lab files: the shipped default, and errors that name the key and line of each problem."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from remotelab.cli import app
from remotelab.devices import DEVICE_CLASSES, SampleArm, Spectrometer, TemperatureController
from remotelab.errors import LabFileError, UnknownDeviceError
from remotelab.lab import Lab, lab_spec, load_lab, parse_lab

GOOD = """\
name: tiny
locations:
  racks: {r: 2}
  stations: [spec]
samples:
  A: {location: r/1}
devices:
  probe:
    class: Thermometer
  heater:
    class: TemperatureController
    limits: {setpoint: [0, 50]}
    safe_state: {setpoint: 20}
simulation:
  seed: 3
  samples:
    A: {composition: {tartrazine: 1.0e-5}}
"""


def test_default_lab_has_every_device_class():
    with load_lab(speed=1000) as lab:
        classes = {type(d).__name__ for d in lab.devices.values()}
        assert classes == set(DEVICE_CLASSES)
        assert isinstance(lab["arm"], SampleArm)
        assert isinstance(lab["spectrometer"], Spectrometer)
        assert isinstance(lab["heater"], TemperatureController)
        assert lab["heater"].limits["setpoint"] == (10.0, 95.0)
        assert lab["heater"].safe_settings == {"setpoint": 25}
        assert lab.tracker.where("S001") == "rack_a/1"
        assert lab.world.seed == 42 and lab.world.clock.speed == 1000
        assert set(lab.by_role("robot")) == {"arm", "pipette"}


def test_unknown_device_names_the_known_ones():
    with load_lab(speed=1000) as lab, pytest.raises(UnknownDeviceError) as info:
        lab["oven"]
    assert "oven" in str(info.value) and "thermometer" in str(info.value)


def test_lab_file_from_a_path(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(GOOD)
    with load_lab(path) as lab:
        assert set(lab) == {"probe", "heater"}
        assert lab.world.samples["A"].composition == {"tartrazine": 1.0e-5}
        assert lab.world.seed == 3


def test_lab_spec_takes_a_path_or_a_shipped_lab_name(tmp_path):
    assert lab_spec().name == lab_spec("sim").name == "simlab"
    serial = lab_spec("serial-sim")
    assert serial.name == "serial-simlab"
    assert {d.backend for d in serial.devices.values()} == {"serial"}
    path = tmp_path / "tiny.yaml"
    path.write_text(GOOD)
    assert set(lab_spec(path).devices) == {"probe", "heater"}
    assert set(lab_spec(str(path)).devices) == {"probe", "heater"}
    with pytest.raises(LabFileError, match="cannot read lab file serial-simm"):
        lab_spec("serial-simm")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("class: Thermometer", "class: Thermostat"),
            "devices.probe.class (line 9): Value error, unknown device class 'Thermostat'",
        ),
        (
            ("safe_state: {setpoint: 20}", "safe_stat: {setpoint: 20}"),
            "devices.heater.safe_stat (line 13): Extra inputs are not permitted",
        ),
        (
            ("limits: {setpoint: [0, 50]}", "limits: {setpoint: [60, 50]}"),
            "devices.heater.limits (line 12)",
        ),
        (("A: {location: r/1}", "A: {location: r/9}"), "unknown location 'r/9'"),
        (
            ("limits: {setpoint: [0, 50]}", "limits: {setpoint: [0, hot]}"),
            "devices.heater.limits.setpoint.1 (line 12)",
        ),
    ],
)
def test_invalid_lab_files_name_key_and_line(edit, expected):
    text = GOOD.replace(*edit)
    with pytest.raises(LabFileError) as info:
        parse_lab(text, "tiny.yaml")
    assert str(info.value).startswith("tiny.yaml: ")
    assert expected in str(info.value)


def test_visibility_is_lab_unless_the_file_says_own():
    assert load_lab(connect=False).describe()["visibility"] == "lab"
    own = parse_lab(GOOD + "visibility: own\n", "tiny.yaml")
    with Lab(own, connect=False) as lab:
        assert lab.visibility == "own" and lab.describe()["visibility"] == "own"
    with pytest.raises(
        LabFileError, match=r"visibility \(line 18\): Input should be 'lab' or 'own'"
    ):
        parse_lab(GOOD + "visibility: mine\n", "tiny.yaml")


def test_lab_file_that_is_not_yaml_or_missing(tmp_path):
    with pytest.raises(LabFileError, match="not valid YAML"):
        parse_lab("name: [unclosed", "bad.yaml")
    with pytest.raises(LabFileError, match="cannot read lab file"):
        load_lab(tmp_path / "absent.yaml")


def test_cli_lab_shows_devices_and_samples():
    result = CliRunner().invoke(app, ["lab", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["devices"]["heater"]["limits"]["setpoint"] == [10.0, 95.0]
    samples = {s["id"]: s for s in info["samples"]}  # as a gateway lists them
    assert samples["T001"]["location"] == "titration" and not samples["T001"]["lost"]


def test_cli_lab_reports_a_bad_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("class: Thermometer", "class: Thermostat"))
    result = CliRunner().invoke(app, ["lab", "--lab", str(path)])
    assert result.exit_code == 2
    assert "unknown device class 'Thermostat'" in result.output


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("limits: {setpoint: [0, 50]}", "limits: {setpiont: [0, 50]}"),
            "devices.heater: no soft limit 'setpiont'; TemperatureController has limits for",
        ),
        (
            ("limits: {setpoint: [0, 50]}", "limits: {setpoint: [0, 500]}"),
            "limits of setpoint [0, 500] go beyond what TemperatureController allows [-10, 150]",
        ),
        (
            ("safe_state: {setpoint: 20}", "safe_state: {temperature: 20}"),
            "devices.heater: unknown safe_state key(s) temperature",
        ),
    ],
)
def test_lab_file_limits_and_safe_state_keys_are_checked(tmp_path, edit, expected):
    path = tmp_path / "lab.yaml"
    path.write_text(GOOD.replace(*edit))
    with pytest.raises(LabFileError) as info:
        load_lab(path)
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)
