"""The plan registry: schemas, validation against the lab, role rules, lab plan modules,
provenance in the start document."""

from __future__ import annotations

import json
import textwrap

import pytest

from _plans_support import engine, events, fast_lab, lab_file, start_doc
from remotelab import __version__
from remotelab.errors import (
    LabFileError,
    PlanNotAllowedError,
    PlanValidationError,
    RemotelabError,
)
from remotelab.plans import PlanRegistry, ValidatedPlan, registry_for

BUILTIN = ["measure", "measure_samples", "optimize", "scan", "temperature_ramp", "titration"]


@pytest.fixture
def lab():
    with fast_lab() as the_lab:
        yield the_lab


@pytest.fixture
def registry(lab) -> PlanRegistry:
    return registry_for(lab)


def rejected(registry, lab, name, params, role="manager") -> list[dict]:
    with pytest.raises(PlanValidationError) as info:
        registry.validate(name, params, lab=lab, role=role)
    assert str(info.value).startswith(f"plan {name!r} cannot run:")
    return info.value.errors


# -- listing ---------------------------------------------------------------------------------------
def test_registry_lists_the_builtin_plans_with_json_schemas(registry):
    assert registry.names() == BUILTIN
    ramp = registry.schema("temperature_ramp")
    assert ramp["title"] == "temperature_ramp"
    props = ramp["properties"]
    assert props["setpoints"]["unit"] == "degC"
    assert props["heater"]["device_kind"] == "temperature_controller"
    assert props["readings"]["minimum"] == 1
    assert all(p.get("description") for p in props.values())
    listed = registry.describe()
    assert [p["name"] for p in listed] == BUILTIN
    assert all(p["description"] and p["schema"]["properties"] for p in listed)
    json.dumps(listed)


def test_defaults_fill_devices_of_the_right_kind(registry, lab):
    validated = registry.validate("measure", {}, lab=lab)
    assert validated.params["detectors"] == [
        n for n, d in lab.devices.items() if d.role == "sensor"
    ]
    ramp = registry.validate("temperature_ramp", {"setpoints": [30]}, lab=lab)
    assert ramp.params["heater"] == "heater"
    assert "heater" in ramp.devices
    again = ValidatedPlan.model_validate_json(ramp.model_dump_json())
    assert again == ramp


def test_sample_ids_the_plan_touches_are_reported(registry, lab):
    validated = registry.validate(
        "measure_samples", {"samples": ["S002", "S001"], "detectors": ["spectrometer"]}, lab=lab
    )
    assert validated.sample_ids == ["S002", "S001"]


# -- invalid submissions: one test each --------------------------------------------------------
def test_unknown_plan_is_rejected(registry, lab):
    errors = rejected(registry, lab, "dance", {})
    assert errors[0]["param"] == "plan"
    assert "unknown plan 'dance'" in errors[0]["message"]
    assert "measure" in errors[0]["message"]


def test_missing_parameter_is_rejected(registry, lab):
    errors = rejected(registry, lab, "measure_samples", {})
    assert errors == [{"param": "samples", "message": errors[0]["message"]}]
    assert "required parameter is missing" in errors[0]["message"]


def test_extra_parameter_is_rejected(registry, lab):
    errors = rejected(registry, lab, "measure", {"num": 2, "colour": "red"})
    assert errors[0]["param"] == "colour"
    assert "unknown parameter" in errors[0]["message"]
    assert "num" in errors[0]["message"]


def test_wrong_type_is_rejected(registry, lab):
    errors = rejected(registry, lab, "measure", {"num": "many"})
    assert errors[0]["param"] == "num"
    assert "valid integer" in errors[0]["message"] and "'many'" in errors[0]["message"]


def test_out_of_bounds_value_is_rejected(registry, lab):
    errors = rejected(registry, lab, "measure", {"num": 0})
    assert errors[0]["param"] == "num"
    assert "greater than or equal to 1" in errors[0]["message"]


def test_value_outside_a_devices_soft_limits_is_rejected(registry, lab):
    errors = rejected(registry, lab, "temperature_ramp", {"setpoints": [30, 120]})
    assert errors == [{"param": "setpoints.1", "message": errors[0]["message"]}]
    assert "120 degC is outside heater's setpoint limits [10, 95]" in errors[0]["message"]


def test_unknown_device_is_rejected(registry, lab):
    errors = rejected(registry, lab, "measure", {"detectors": ["thermometer", "laser"]})
    assert errors[0]["param"] == "detectors"
    assert "unknown device 'laser'" in errors[0]["message"]
    assert "thermometer" in errors[0]["message"]


def test_wrong_kind_of_device_is_rejected(registry, lab):
    errors = rejected(registry, lab, "scan", {"motor": "thermometer", "start": 0, "stop": 1})
    assert errors[0]["param"] == "motor"
    assert "is a Thermometer, not a settable" in errors[0]["message"]
    detectors = rejected(registry, lab, "measure", {"detectors": ["heater"]})
    assert detectors[0]["param"] == "detectors"
    assert "not a detector" in detectors[0]["message"]


def test_unknown_sample_is_rejected(registry, lab):
    errors = rejected(registry, lab, "measure_samples", {"samples": ["S001", "S999"]})
    assert errors[0]["param"] == "samples"
    assert "unknown sample 'S999'" in errors[0]["message"]


def test_plan_not_allowed_for_the_role_is_rejected(tmp_path):
    path = lab_file(tmp_path, "plans:\n  roles:\n    researcher: [measure, scan]\n")
    with fast_lab(path=path) as lab:
        registry = registry_for(lab)
        with pytest.raises(PlanNotAllowedError) as info:
            registry.validate("titration", {"sample_id": "T001"}, lab=lab, role="researcher")
        assert isinstance(info.value, RemotelabError)
        assert "role 'researcher' may not run plan 'titration'" in str(info.value)
        assert "measure, scan" in str(info.value)
        assert registry.validate("measure", {}, lab=lab, role="researcher").name == "measure"
        # a role the lab sets no rule for may run every plan
        assert registry.validate("titration", {}, lab=lab, role="manager").name == "titration"


def test_every_problem_is_reported_at_once(registry, lab):
    errors = rejected(
        registry, lab, "scan", {"motor": "balance", "start": 0, "stop": 1, "num": 1, "x": 2}
    )
    assert {e["param"] for e in errors} == {"motor", "num", "x"}


# -- a lab's own plans ------------------------------------------------------------------------
LAB_MODULE = '''
import bluesky.plans as bp
from remotelab.plans import DeviceParam, Param, PlanParams, plan


class WeighParams(PlanParams):
    balance: str | None = DeviceParam("balance", None, description="the balance")
    times: int = Param(2, ge=1, le=5, description="how many weighings")


@plan(params=WeighParams, example={"times": 2})
def weigh(balance, times=2, md=None):
    """Weigh what is on the balance a few times."""
    return (yield from bp.count([balance], num=times, md=md))
'''


def test_a_lab_file_adds_its_own_plan_modules(tmp_path, monkeypatch):
    (tmp_path / "mylab_plans.py").write_text(textwrap.dedent(LAB_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = lab_file(
        tmp_path, "plans:\n  modules: [mylab_plans]\n  roles:\n    researcher: [weigh]\n"
    )
    with fast_lab(path=path) as lab:
        registry = registry_for(lab)
        assert "weigh" in registry.names() and set(BUILTIN) < set(registry.names())
        assert registry.allowed("researcher") == ["weigh"]
        assert registry.schema("weigh")["properties"]["times"]["maximum"] == 5
        errors = rejected(registry, lab, "weigh", {"times": 9}, role="researcher")
        assert errors[0]["param"] == "times"
        re = engine()
        re(registry.build(registry.validate("weigh", {}, lab=lab, role="researcher"), lab))
        assert [e["data"]["balance_mass"] for e in events(re)] == [pytest.approx(0, abs=1e-3)] * 2
        assert start_doc(re)["plan_name"] == "weigh"


def test_bad_plan_modules_and_role_rules_are_lab_file_errors(tmp_path):
    missing = lab_file(tmp_path, "plans:\n  modules: [no_such_plans]\n")
    with fast_lab(path=missing) as lab, pytest.raises(LabFileError, match="no_such_plans"):
        registry_for(lab)
    unknown = lab_file(tmp_path, "plans:\n  roles:\n    researcher: [dance]\n")
    with (
        fast_lab(path=unknown) as lab,
        pytest.raises(LabFileError, match=r"unknown plan.*dance"),
    ):
        registry_for(lab)


# -- provenance -------------------------------------------------------------------------------
def test_start_document_carries_provenance(registry, lab):
    submitted = {"setpoints": [30], "detectors": ["thermometer"]}
    validated = registry.validate("temperature_ramp", submitted, lab=lab)
    re = engine()
    md = {"experiment_id": "exp-0042", "submitter": "ada@uni.example", "priority": "high"}
    re(registry.build(validated, lab, md=md))
    start = start_doc(re)
    assert start["experiment_id"] == "exp-0042"
    assert start["submitter"] == "ada@uni.example"
    assert start["priority"] == "high"
    assert start["lab"] == "simlab"
    assert start["plan_name"] == "temperature_ramp"
    assert start["plan_params"] == submitted
    assert start["plan_params_resolved"]["heater"] == "heater"
    assert start["sample_ids"] == []
    assert start["remotelab_version"] == __version__
    config = start["device_config"]
    assert set(config) == {"heater", "thermometer"}
    heater = config["heater"]
    assert heater["class"] == "TemperatureController"
    assert heater["configuration"]["heater_ramp_rate"] == 10
    assert heater["configuration"]["heater_settle_time"] == 10
    assert heater["limits"]["setpoint"] == [10.0, 95.0]
    assert heater["safe_state"] == {"setpoint": 25}
    json.dumps(start)


def test_a_run_can_be_repeated_from_its_start_document(registry, lab):
    first = engine()
    first(registry.build(registry.validate("measure", {"num": 2}, lab=lab), lab))
    start = start_doc(first)
    again = registry.validate(start["plan_name"], start["plan_params_resolved"], lab=lab)
    assert again.params == start["plan_params_resolved"]
    second = engine()
    second(registry.build(again, lab))
    assert len(events(second)) == 2
    assert start_doc(second)["experiment_id"] != start["experiment_id"]


def test_unknown_well_and_location_are_rejected(registry, lab):
    errors = rejected(registry, lab, "optimize", {"reagent_a": "fridge/1"})
    assert errors[0]["param"] == "reagent_a"
    assert "unknown well 'fridge/1'" in errors[0]["message"]
    errors = rejected(registry, lab, "measure_samples", {"samples": ["S001"], "station": "moon"})
    assert errors[0]["param"] == "station"
    assert "unknown location 'moon'" in errors[0]["message"]


def test_optimize_refuses_a_budget_the_reservoirs_cannot_supply(registry, lab):
    errors = rejected(registry, lab, "optimize", {"budget": 150})
    params = {e["param"] for e in errors}
    assert params == {"solvent"}
    assert "solvent/1 holds 100000 uL" in errors[0]["message"]
    bad_objective = rejected(registry, lab, "optimize", {"objective": "colour"})
    assert bad_objective[0]["param"] == "objective"
    assert "probe reads no 'colour'" in bad_objective[0]["message"]
