"""bluesky's own stock plans drive every device of the shipped simulated lab."""

from __future__ import annotations

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import event_model
import jsonschema
import numpy as np
import pytest

SENSORS = ["thermometer", "ph_meter", "balance", "spectrometer"]
NUMERIC_MOVABLES = {"heater": (30.0, 34.0), "stirrer": (200.0, 400.0), "pump": (0.5, 1.5)}


def validate_all(documents):
    """Every document is valid under event-model's schema for its kind."""
    assert documents, "the plan emitted no documents"
    for name, doc in documents:
        schema = event_model.schemas[event_model.DocumentNames[name]]
        jsonschema.validate(_jsonable(doc), schema)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def events(documents):
    return [doc for name, doc in documents if name == "event"]


def test_count_reads_every_device(lab, RE):
    RE(bp.count([lab[name] for name in lab], num=2))
    validate_all(RE.documents)
    evs = events(RE.documents)
    assert len(evs) == 2
    data = evs[0]["data"]
    assert data["thermometer_temperature"] == pytest.approx(22.0, abs=0.1)
    assert data["arm_location"] == "home"
    assert np.asarray(data["spectrometer_absorbance"]).shape == (201,)
    descriptor = next(doc for name, doc in RE.documents if name == "descriptor")
    keys = descriptor["data_keys"]
    assert keys["thermometer_temperature"]["units"] == "degC"
    assert keys["spectrometer_absorbance"]["shape"] == [201]
    assert keys["balance_mass"]["precision"] == 4
    config = descriptor["configuration"]["spectrometer"]["data"]
    assert len(config["spectrometer_wavelength"]) == 201


@pytest.mark.parametrize("name", sorted(NUMERIC_MOVABLES))
def test_scan_and_list_scan_each_numeric_movable(lab, RE, name):
    lo, hi = NUMERIC_MOVABLES[name]
    device = lab[name]
    RE(bp.scan([lab["thermometer"]], device, lo, hi, 3))
    RE(bp.list_scan([lab["thermometer"]], device, [hi + 0.5, hi + 1.0]))
    validate_all(RE.documents)
    positions = [ev["data"][f"{device.name}_{device.readback_name}"] for ev in events(RE.documents)]
    expected = [lo, (lo + hi) / 2, hi, hi + 0.5, hi + 1.0]
    tolerance = {"heater": 0.25, "stirrer": 10.0, "pump": 1e-6}[name]
    assert positions == pytest.approx(expected, abs=tolerance)


@pytest.mark.parametrize("name", ["heater", "stirrer"])
def test_rel_scan_returns_to_start(lab, RE, name):
    device = lab[name]
    RE(bps.mv(device, {"heater": 30.0, "stirrer": 300.0}[name]))
    start = device.position
    RE(bp.rel_scan([lab["thermometer"]], device, -2.0, 2.0, 3))
    validate_all(RE.documents)
    band = {"heater": 0.25, "stirrer": 10.0}[name]
    assert device.position == pytest.approx(start, abs=band)


def test_mv_drives_the_robots(lab, RE):
    RE(bps.mv(lab["arm"], ("rack_a/1", "spectrometer")))
    RE(bps.mv(lab["pipette"], {"source": "reagent_a/1", "destination": "plate/1", "volume": 200}))
    RE(bp.count([lab["spectrometer"], lab["arm"], lab["pipette"]]))
    validate_all(RE.documents)
    assert lab.tracker.where("S001") == "spectrometer"
    assert lab.world.samples["S001"].location == "spectrometer"
    assert lab["pipette"].volume("plate/1") == pytest.approx(200.0)
    assert lab.world.wells["plate/1"].volume_ul == pytest.approx(200.0)
    peak = events(RE.documents)[0]["data"]["spectrometer_peak_wavelength"]
    assert peak == pytest.approx(427.0, abs=4.0)  # tartrazine's band
