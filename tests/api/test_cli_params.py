"""How the remote CLI reads ``-p key=value`` against a plan's JSON Schema."""

from __future__ import annotations

import pytest

from remotelab.cli.remote import fit_params, parse_param
from remotelab.errors import ApiInvalid
from remotelab.lab import load_lab
from remotelab.plans.registry import registry_for


def test_values_are_json_then_lists_then_text():
    assert parse_param("num=3") == ("num", 3)
    assert parse_param("setpoints=[30, 35.5]") == ("setpoints", [30, 35.5])
    assert parse_param("detectors=thermometer,ph_meter") == (
        "detectors",
        ["thermometer", "ph_meter"],
    )
    assert parse_param("sample_id=S001") == ("sample_id", "S001")
    assert parse_param("flag=true") == ("flag", True)
    with pytest.raises(ApiInvalid, match="key=value"):
        parse_param("no-equals-sign")


def test_a_single_value_becomes_a_list_where_the_plan_takes_one():
    lab = load_lab(speed=1000)
    try:
        registry = registry_for(lab)
        schema = registry.schema("measure")
        params = fit_params({"detectors": "thermometer", "num": 2, "sample_id": "S001"}, schema)
        assert params == {"detectors": ["thermometer"], "num": 2, "sample_id": "S001"}
        # and the registry accepts what the CLI makes of it
        registry.validate("measure", params, lab=lab)
        ramp = fit_params({"setpoints": 30}, registry.schema("temperature_ramp"))
        assert ramp == {"setpoints": [30]}
    finally:
        lab.close()
