"""How ``run``, ``submit`` and ``edit`` read ``-p key=value`` against a plan's JSON Schema."""

from __future__ import annotations

import pytest

from remotelab.cli.params import parse_params, read_params
from remotelab.errors import PlanValidationError
from remotelab.lab import load_lab
from remotelab.plans.registry import registry_for

SCHEMA = {
    "title": "x",
    "properties": {"detectors": {"anyOf": [{"type": "array"}, {"type": "null"}]}},
}


def test_values_are_json_then_lists_then_text():
    params = parse_params(
        [
            "num=3",
            "detectors=thermometer",
            "setpoints=[30, 40.5]",
            "name=S001",
            "flag=true",
            "pair=a, b",
            "gone=null",
        ],
        SCHEMA,
    )
    assert params == {
        "num": 3,
        "detectors": ["thermometer"],
        "setpoints": [30, 40.5],
        "name": "S001",
        "flag": True,
        "pair": ["a", "b"],
        "gone": None,
    }


def test_null_for_a_list_parameter_stays_null():
    assert parse_params(["detectors=null"], SCHEMA) == {"detectors": None}


def test_malformed_and_repeated_items_are_named():
    with pytest.raises(PlanValidationError, match="given more than once") as repeated:
        parse_params(["num=1", "num=2"], SCHEMA, plan="measure")
    assert repeated.value.plan == "measure" and repeated.value.errors[0]["param"] == "num"
    with pytest.raises(PlanValidationError, match="write -p key=value"):
        parse_params(["num"], SCHEMA)


def test_a_single_value_becomes_a_list_where_the_plan_takes_one():
    lab = load_lab(speed=1000, connect=False)
    try:
        registry = registry_for(lab)
        params = read_params(
            ["detectors=thermometer", "num=2", "sample_id=S001"],
            lambda: registry.schema("measure"),
        )
        assert params == {"detectors": ["thermometer"], "num": 2, "sample_id": "S001"}
        registry.validate("measure", params, lab=lab)  # the registry accepts what the CLI made
        ramp = read_params(["setpoints=30"], lambda: registry.schema("temperature_ramp"))
        assert ramp == {"setpoints": [30]}
        # an unknown plan: read as given, for the submission to refuse by name
        with pytest.raises(PlanValidationError, match="unknown plan"):
            registry.schema("nope")
        assert read_params(["x=1"], lambda: registry.schema("nope")) == {"x": 1}
    finally:
        lab.close()


def test_a_schema_type_written_as_a_list_is_understood():
    schema = {"properties": {"detectors": {"type": ["array", "null"]}, "x": {"type": ["string"]}}}
    assert parse_params(["detectors=a", "x=b"], schema) == {"detectors": ["a"], "x": "b"}
