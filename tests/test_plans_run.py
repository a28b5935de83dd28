"""Every plan runs on the default simulated lab and its result agrees with the world model;
every plan can be walked by ``summarize_plan`` without touching a device; a failed or
interrupted run leaves the lab in its safe state."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import time

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.simulators import summarize_plan
from bluesky.utils import RunEngineInterrupted

from _plans_support import engine, events, fast_lab, start_doc, stop_doc
from remotelab.cli.plans import abort_on_sigint, execute
from remotelab.errors import DeviceFault, NoResultError, PlanValidationError
from remotelab.lab import load_lab
from remotelab.plans import registry_for
from remotelab.sim import chemistry, inject_fault


@pytest.fixture
def lab():
    with fast_lab() as the_lab:
        yield the_lab


@pytest.fixture
def registry(lab):
    return registry_for(lab)


def run(registry, lab, name, params):
    re = engine()
    re(registry.build(registry.validate(name, params, lab=lab), lab))
    return re


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


# -- each plan against the world model -----------------------------------------------------------
def test_measure_reads_the_sensors_n_times_with_sample_metadata(registry, lab):
    re = run(
        registry,
        lab,
        "measure",
        {"detectors": ["thermometer", "ph_meter"], "num": 4, "sample_id": "T001"},
    )
    rows = events(re)
    assert len(rows) == 4
    ambient = lab.world.zone("heater").temperature()
    expected_ph = chemistry.ph(lab.world.samples["T001"].composition)
    for row in rows:
        assert row["data"]["thermometer_temperature"] == pytest.approx(ambient, abs=0.05)
        assert row["data"]["ph_meter_ph"] == pytest.approx(expected_ph, abs=0.02)
    start = start_doc(re)
    assert start["sample_ids"] == ["T001"]
    assert start["sample"]["description"] == "acetic acid, unknown strength"
    assert start["sample"]["location"] == "titration"


def test_scan_steps_a_settable_and_reads_detectors(registry, lab):
    re = run(
        registry,
        lab,
        "scan",
        {"detectors": ["thermometer"], "motor": "stirrer", "start": 0, "stop": 900, "num": 4},
    )
    speeds = [e["data"]["stirrer_speed"] for e in events(re)]
    assert speeds == [pytest.approx(v, abs=max(5.0, 0.02 * v)) for v in (0, 300, 600, 900)]


def test_grid_scan_covers_every_pair(registry, lab):
    re = run(
        registry,
        lab,
        "scan",
        {
            "detectors": ["thermometer"],
            "motor": "heater",
            "start": 30,
            "stop": 35,
            "num": 2,
            "motor2": "stirrer",
            "start2": 0,
            "stop2": 300,
            "num2": 2,
        },
    )
    pairs = {(e["data"]["heater_setpoint"], e["data"]["stirrer_setpoint"]) for e in events(re)}
    assert pairs == {(30, 0), (30, 300), (35, 0), (35, 300)}
    for e in events(re):
        assert e["data"]["thermometer_temperature"] == pytest.approx(
            e["data"]["heater_setpoint"], abs=0.3
        )


def test_temperature_ramp_reaches_each_setpoint(registry, lab):
    setpoints = [30.0, 45.0, 40.0]
    re = run(
        registry,
        lab,
        "temperature_ramp",
        {"setpoints": setpoints, "detectors": ["thermometer"], "readings": 2, "ramp_rate": 15},
    )
    rows = events(re)
    assert [e["data"]["heater_setpoint"] for e in rows] == [s for s in setpoints for _ in (1, 2)]
    tolerance = lab["heater"].tolerance.get()
    for e in rows:
        assert e["data"]["heater_temperature"] == pytest.approx(
            e["data"]["heater_setpoint"], abs=tolerance + 0.05
        )
        assert e["data"]["thermometer_temperature"] == pytest.approx(
            e["data"]["heater_setpoint"], abs=tolerance + 0.05
        )
    assert lab.world.zone("heater").ramp_rate == 15
    assert start_doc(re)["setpoints"] == setpoints


def test_measure_samples_measures_each_and_returns_it_to_its_slot(registry, lab):
    samples = ["S001", "S002", "S004", "S005"]
    slots = {s: lab.tracker.where(s) for s in samples}
    re = run(registry, lab, "measure_samples", {"samples": samples, "detectors": ["spectrometer"]})
    rows = events(re)
    assert [e["data"]["sample_id"] for e in rows] == samples
    for sample, row in zip(samples, rows, strict=True):
        expected = chemistry.absorbance(lab.world.samples[sample].composition)
        measured = np.asarray(row["data"]["spectrometer_absorbance"])
        assert np.max(np.abs(measured - expected)) < 0.006, sample
    # tartrazine peaks near 427 nm, allura red near 504 nm
    assert rows[0]["data"]["spectrometer_peak_wavelength"] == pytest.approx(427, abs=4)
    assert rows[1]["data"]["spectrometer_peak_wavelength"] == pytest.approx(504, abs=4)
    for sample, slot in slots.items():
        assert lab.tracker.where(sample) == slot
        assert lab.world.samples[sample].location == slot
    assert lab.tracker.at("spectrometer") is None
    start = start_doc(re)
    assert start["sample_ids"] == samples
    assert start["sample_locations"] == slots


def test_titration_endpoint_is_near_the_models_equivalence_point(registry, lab):
    acid = lab.world.samples["T001"]
    c_acid, volume = acid.composition["acetic_acid"], acid.volume_ml
    c_base = lab["pump"].backend.titrant["naoh"]
    model_equivalence = c_acid * volume / c_base  # 17.0 mL for the shipped lab
    re = run(registry, lab, "titration", {"sample_id": "T001", "titrant_molarity": c_base})
    rows = events(re)
    added = [e["data"]["titrant_added"] for e in rows]
    assert added == sorted(added) and added[0] == 0
    assert rows[-1]["data"]["ph_meter_ph"] >= 11.0
    steps = np.diff(added)
    assert steps.min() <= 0.1 < steps.max()  # fine steps near the endpoint, coarse away
    (endpoint,) = events(re, "endpoint")
    assert endpoint["data"]["equivalence_volume"] == pytest.approx(model_equivalence, abs=0.1)
    assert endpoint["data"]["analyte_molarity"] == pytest.approx(c_acid, rel=0.01)
    assert lab["stirrer"].setpoint.get() == 0


def test_a_titrated_sample_is_used_up_and_a_titration_with_no_endpoint_fails(registry, lab):
    run(registry, lab, "titration", {"sample_id": "T001"})
    assert lab.tracker.consumed["T001"] == "titrated"
    with pytest.raises(PlanValidationError, match=r"sample_id: sample 'T001' is used up: titrated"):
        registry.validate("titration", {"sample_id": "T001"}, lab=lab)
    lab.tracker.consumed.clear()  # as if the lab had not recorded it: the vessel is past pH 11
    re = engine()
    with pytest.raises(NoResultError, match=r"no equivalence point: the pH was .* before any"):
        re(registry.build(registry.validate("titration", {"sample_id": "T001"}, lab=lab), lab))
    assert stop_doc(re)["exit_status"] == "fail" and not events(re, "endpoint")


def test_titration_stops_at_the_maximum_volume(registry, lab):
    re = run(registry, lab, "titration", {"max_volume_ml": 5.0, "endpoint_ph": None})
    rows = events(re)
    assert rows[-1]["data"]["titrant_added"] == pytest.approx(5.0)
    assert lab["pump"].dispensed.get() == pytest.approx(5.0)
    assert rows[-1]["data"]["ph_meter_ph"] < 7


# -- summarize_plan walks every plan without touching a device -----------------------------------
def test_summarize_plan_walks_every_registered_plan_without_touching_a_device(
    registry, lab, monkeypatch
):
    touched: list[str] = []

    def guard(device_name, what):
        def refuse(*args, **kwargs):
            touched.append(f"{device_name}.{what}")
            raise AssertionError(f"{device_name}.{what} touched")

        return refuse

    for name, device in lab.devices.items():
        for what in ("read", "write", "run", "stop"):
            monkeypatch.setattr(device.backend, what, guard(name, what))
    before = lab.tracker.snapshot()
    for name in registry.names():
        example = registry.definition(name).example
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            summarize_plan(registry.build(registry.validate(name, example, lab=lab), lab))
        text = out.getvalue()
        assert "Open Run" in text and "Close Run" in text, name
        assert "Read" in text, name
    assert touched == []
    assert lab.tracker.snapshot() == before


# -- failures and interruptions leave the lab safe ------------------------------------------------
def test_a_failed_run_ends_with_the_lab_in_its_safe_state(registry, lab):
    plan = registry.build(registry.validate("titration", {"sample_id": "T001"}, lab=lab), lab)
    inject_fault(lab["pump"], "fail")
    re = engine()
    outcome, error = execute(lab, plan, re)
    assert outcome == "fail"
    assert isinstance(error, DeviceFault) and "pump" in str(error)
    assert stop_doc(re)["exit_status"] == "fail"
    assert lab["stirrer"].setpoint.get() == 0
    wait_for(lambda: lab["stirrer"].speed.get() < 5)
    assert lab["heater"].setpoint.get() == 25


def test_a_sample_left_at_the_station_by_a_failure_is_put_back(registry, lab):
    plan = registry.build(
        registry.validate(
            "measure_samples",
            {"samples": ["S001", "S002"], "detectors": ["spectrometer"]},
            lab=lab,
        ),
        lab,
    )
    inject_fault(lab["spectrometer"], "fail", action="measure")
    re = engine()
    outcome, error = execute(lab, plan, re)
    assert outcome == "fail" and "spectrometer" in str(error)
    assert lab.tracker.where("S001") == "rack_a/1"
    assert lab.world.samples["S001"].location == "rack_a/1"
    assert lab.tracker.where("S002") == "rack_a/2"
    assert lab.tracker.at("spectrometer") is None
    assert lab["arm"].position == "home"


def _pause_after_first_reading(plan):
    """``plan`` with a pause right after its first reading (as Ctrl-C would pause it)."""
    seen = []

    def insert(msg):
        if msg.command == "save" and not seen:
            seen.append(msg)

            def then_pause():
                ret = yield msg
                yield from bps.pause()
                return ret

            return then_pause(), None
        return None, None

    return bpp.plan_mutator(plan, insert)


@pytest.mark.parametrize("request_", ["abort", "stop"])
def test_an_abort_or_stop_leaves_the_sample_where_it_is_and_moves_no_arm(registry, lab, request_):
    validated = registry.validate(
        "measure_samples",
        {"samples": ["S001", "S002"], "detectors": ["spectrometer"], "readings": 2},
        lab=lab,
    )
    re = engine()
    with pytest.raises(RunEngineInterrupted):
        re(_pause_after_first_reading(registry.build(validated, lab)))
    assert lab.tracker.where("S001") == "spectrometer"
    cleanup = []
    re.msg_hook = cleanup.append
    getattr(re, request_)()
    assert stop_doc(re)["exit_status"] == {"abort": "abort", "stop": "success"}[request_]
    assert [m for m in cleanup if m.command == "close_run"]  # the cleanup ran…
    assert not [m for m in cleanup if m.obj is lab["arm"]]  # …and did not move the arm
    lab.safe_state()  # what the caller does after an abort
    assert lab.tracker.where("S001") == "spectrometer"
    assert lab.world.samples["S001"].location == "spectrometer"
    assert lab.tracker.where("S002") == "rack_a/2"
    assert lab["arm"].position == "home"


def test_ctrl_c_aborts_the_run_and_brings_the_lab_to_its_safe_state():
    with load_lab(speed=20.0) as lab:
        registry = registry_for(lab)
        plan = registry.build(
            registry.validate(
                "temperature_ramp", {"setpoints": [70], "detectors": ["thermometer"]}, lab=lab
            ),
            lab,
        )
        re = RunEngine({}, context_managers=[abort_on_sigint])
        docs = []
        re.subscribe(lambda name, doc: docs.append((name, doc)))
        zone = lab.world.zone("heater")

        def interrupt():
            wait_for(lambda: zone.setpoint == 70)
            os.kill(os.getpid(), signal.SIGINT)

        presser = threading.Thread(target=interrupt, daemon=True)
        presser.start()
        outcome, error = execute(lab, plan, re)
        presser.join(5)
        assert (outcome, error) == ("abort", None)
        assert [d["exit_status"] for n, d in docs if n == "stop"] == ["abort"]
        assert not [d for n, d in docs if n == "event"]
        assert lab["heater"].setpoint.get() == 25
        assert zone.setpoint == 25
        assert zone.temperature() < 69
