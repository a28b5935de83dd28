"""``remotelab check``: a lab file and its plans checked on the lab's simulated twin."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from _plans_support import lab_file
from remotelab.cli import app
from remotelab.plans.check import check_lab

runner = CliRunner()

PLANS = '''
import bluesky.plan_stubs as bps
import bluesky.plans as bp

from remotelab.plans import DeviceParam, Param, PlanParams, plan


class HeatParams(PlanParams):
    heater: str = DeviceParam("temperature_controller", description="the heater")
    setpoint: float = Param(description="where to set it")
    detectors: list[str] = DeviceParam("detector", description="what to read")


@plan(
    params=HeatParams, example={"heater": "heater", "setpoint": 500, "detectors": ["thermometer"]}
)
def overheat(heater, setpoint, detectors):
    """Heat past the heater's limit."""
    yield from bps.mv(heater, setpoint)
    yield from bp.count(detectors)


@plan(params=HeatParams, example={"heater": "heater", "setpoint": 30, "detectors": ["nope"]})
def unknown_detector(heater, setpoint, detectors):
    """Read a detector the lab does not have."""
    yield from bp.count(detectors)


@plan(params=HeatParams, example={"heater": "heater", "setpoint": 50, "detectors": ["thermometer"]})
def leave_hot(heater, setpoint, detectors):
    """Heat, measure, and leave the heater hot."""
    yield from bps.mv(heater, setpoint)
    yield from bp.count(detectors)
'''


@pytest.mark.parametrize("lab", ["sim", "serial-sim"])
def test_the_shipped_labs_pass(lab, tmp_path):
    out = tmp_path / "junit.xml"
    result = runner.invoke(app, ["check", lab, "--junit", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "checked 6 plans in" in result.output and "FAIL" not in result.output
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    names = {case.get("name") for case in suite.iter("testcase")}
    assert names == {
        "measure",
        "measure_samples",
        "optimize",
        "scan",
        "temperature_ramp",
        "titration",
    }


def test_each_failure_is_named(tmp_path):
    (tmp_path / "risky_plans.py").write_text(PLANS)
    broken = tmp_path / "broken_plans.py"
    broken.write_text("def oops(:\n")
    out = tmp_path / "junit.xml"
    args = ["check", "sim", "--plans", str(tmp_path / "risky_plans.py")]
    result = runner.invoke(app, [*args, "--plans", str(broken), "--json", "--junit", str(out)])
    assert result.exit_code == 1
    results = json.loads(result.stdout)
    failed = {(r["subject"], r["step"]): r["message"] for r in results if not r["ok"]}
    assert set(failed) == {
        (str(broken), "import"),
        ("overheat", "run"),
        ("unknown_detector", "validate"),
        ("leave_hot", "safe state"),
    }
    assert "cannot import plan module" in failed[(str(broken), "import")]
    assert "SyntaxError" in failed[(str(broken), "import")]
    assert "heater" in failed[("overheat", "run")] and "500" in failed[("overheat", "run")]
    assert "unknown device 'nope'" in failed[("unknown_detector", "validate")]
    assert "heater: setpoint 50 degC, its safe state 25 degC" in failed[("leave_hot", "safe state")]
    # the built-in plans still pass beside them
    assert all(r["ok"] for r in results if r["subject"] == "titration")
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert len(cases) == 9 + 1  # the 9 plans, and the module that did not import
    assert suite.get("failures") == "4"
    failure = cases["leave_hot"].find("failure")
    assert failure is not None and failure.get("message", "").startswith("safe state: ")
    assert cases["measure"].find("failure") is None


def test_a_broken_lab_file_fails_at_parse_naming_the_key(tmp_path):
    path = lab_file(tmp_path, "")
    path.write_text(path.read_text().replace("class: Balance", "class: Scales"))
    report = check_lab(path)
    assert not report.ok and report.plans == []
    [step] = report.steps
    assert step.step == "parse" and "devices.balance.class" in step.message
    assert "unknown device class 'Scales'" in step.message
    result = runner.invoke(app, ["check", str(path)], terminal_width=200)
    assert result.exit_code == 1 and "Scales" in result.output and "FAIL" in result.output


def test_a_lab_with_a_plan_module_it_cannot_import_fails_on_it(tmp_path):
    path = lab_file(tmp_path, "plans:\n  modules: [no_such_plans_module]\n")
    report = check_lab(path)
    [failed] = report.failures()
    assert (failed.subject, failed.step) == ("no_such_plans_module", "import")
    assert "No module named 'no_such_plans_module'" in failed.message
    assert len(report.plans) == 6  # the others are still checked
