"""Export round-trips (CSV, JSON, HDF5 hold the store's values), plots, and the data CLI."""

from __future__ import annotations

import csv
import io
import json

import h5py
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import count, scan
from matplotlib.image import imread
from typer.testing import CliRunner

from remotelab.cli import app
from remotelab.data.export import export_run
from remotelab.errors import ExportError
from remotelab.lab import load_lab

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def lab():
    with load_lab(speed=2000) as the_lab:
        # put a coloured sample in the spectrometer so spectra are real curves
        lab_arm = the_lab["arm"]
        from ophyd.status import wait

        wait(lab_arm.move_sample("S001", "spectrometer"), timeout=30)
        yield the_lab


@pytest.fixture
def runs(lab, store):
    RE = RunEngine({}, context_managers=[])
    RE.subscribe(store)
    (spectra,) = RE(
        count([lab["spectrometer"], lab["thermometer"]], num=4),
        experiment_id="E-spec",
        sample_ids=["S001"],
        submitter="ada",
    )
    (ramp,) = RE(scan([lab["thermometer"]], lab["heater"], 25, 30, 4), experiment_id="E-ramp")
    store.wait_plots()
    return {"spectra": spectra, "ramp": ramp}


def test_csv_holds_the_stored_values(store, runs, tmp_path):
    uid = runs["spectra"]
    paths = export_run(store, uid, "csv", tmp_path / "out")
    table = store.table(uid)
    main, spectrum = paths
    rows = list(csv.DictReader(main.open()))
    assert [int(r["seq_num"]) for r in rows] == list(table.seq_num)
    for key in table.scalar_columns():
        np.testing.assert_array_equal([float(r[key]) for r in rows], table.columns[key])
    np.testing.assert_array_equal([float(r["time"]) for r in rows], table.time)
    lines = list(csv.reader(spectrum.open()))
    axis = np.array([float(v) for v in lines[0][1:]])
    np.testing.assert_array_equal(axis, np.linspace(350, 750, 201))
    values = np.array([[float(v) for v in line[1:]] for line in lines[1:]])
    np.testing.assert_array_equal(values, table.columns["spectrometer_absorbance"])
    assert values.max() > 0.1  # a real spectrum of the dye, not noise


def test_hdf5_holds_the_stored_values(store, runs, tmp_path):
    uid = runs["spectra"]
    (path,) = export_run(store, uid, "hdf5", tmp_path)
    table = store.table(uid)
    with h5py.File(path) as f:
        assert f.attrs["NX_class"] == "NXroot"
        entry = f["entry"]
        assert entry.attrs["NX_class"] == "NXentry"
        assert entry["entry_identifier"][()].decode() == uid
        assert entry["experiment_identifier"][()].decode() == "E-spec"
        assert entry["user/name"][()].decode() == "ada"
        assert entry["content_hash"][()].decode() == store.run(uid).content_hash
        primary = entry["primary"]
        assert primary.attrs["NX_class"] == "NXdata"
        for key, column in table.columns.items():
            np.testing.assert_array_equal(primary[key][()], column)
        assert primary["spectrometer_absorbance"].shape == (4, 201)
        assert primary["spectrometer_absorbance"].attrs["units"] == "AU"
        np.testing.assert_array_equal(primary["time"][()], table.time)
        np.testing.assert_array_equal(
            entry["instrument/spectrometer/spectrometer_wavelength"][()],
            np.linspace(350, 750, 201),
        )
        names = [n.decode() for n in entry["documents/name"][()]]
        assert names == [n for n, _ in store.documents(uid)]
        start = json.loads(entry["documents/document"][0])
        assert start["uid"] == uid


def test_hdf5_of_a_scan_names_its_axis(store, runs, tmp_path):
    (path,) = export_run(store, runs["ramp"], "hdf5", tmp_path)
    with h5py.File(path) as f:
        primary = f["entry/primary"]
        assert list(primary.attrs["axes"]) == ["heater_temperature"]
        assert primary.attrs["signal"] == "thermometer_temperature"
        np.testing.assert_array_equal(
            primary["heater_setpoint"][()], store.table(runs["ramp"]).columns["heater_setpoint"]
        )


def test_json_holds_the_stored_values(store, runs, tmp_path):
    uid = runs["spectra"]
    (path,) = export_run(store, uid, "json", tmp_path)
    record = json.loads(path.read_text())
    table = store.table(uid)
    assert record["start"]["uid"] == uid and record["stop"]["exit_status"] == "success"
    assert record["run"]["sample_ids"] == ["S001"]
    spectra = np.array([e["data"]["spectrometer_absorbance"] for e in record["events"]])
    np.testing.assert_array_equal(spectra, table.columns["spectrometer_absorbance"])
    temps = [e["data"]["thermometer_temperature"] for e in record["events"]]
    np.testing.assert_array_equal(temps, table.columns["thermometer_temperature"])


def test_plot_is_made_at_run_end_and_is_a_png(store, runs):
    for uid in runs.values():
        png = store.plot(uid)
        assert png is not None and png.startswith(PNG_SIGNATURE)
        image = imread(io.BytesIO(png), format="png")
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
        assert image[..., :3].std() > 0.05  # something was drawn
    assert store.plot_errors == {}


def test_bad_format_and_missing_stream(store, runs, tmp_path):
    with pytest.raises(ExportError, match="unknown export format"):
        export_run(store, runs["spectra"], "xlsx", tmp_path)
    with pytest.raises(ExportError, match="no stream 'baseline'"):
        export_run(store, runs["spectra"], "csv", tmp_path, stream="baseline")


def test_cli_runs_export_plot_verify(store, runs, tmp_path):
    cli = CliRunner()
    db = ["--store", str(store.path)]
    result = cli.invoke(app, ["runs", "--json", "--experiment", "E-spec", *db])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [r["uid"] for r in listed] == [runs["spectra"]]
    assert listed[0]["status"] == "success" and listed[0]["num_events"] == 4

    out = tmp_path / "exported"
    for fmt in ("csv", "json", "hdf5"):
        result = cli.invoke(
            app, ["export", runs["spectra"][:8], "--format", fmt, "-o", str(out), *db]
        )
        assert result.exit_code == 0, result.output
    assert {p.suffix for p in out.iterdir()} == {".csv", ".json", ".h5"}

    png = tmp_path / "ramp.png"
    result = cli.invoke(app, ["plot", runs["ramp"], "-o", str(png), *db])
    assert result.exit_code == 0, result.output
    assert png.read_bytes() == store.plot(runs["ramp"])

    result = cli.invoke(app, ["verify", runs["ramp"], *db])
    assert result.exit_code == 0 and "OK" in result.output

    result = cli.invoke(app, ["export", "ffffffff", "--format", "csv", *db])
    assert result.exit_code == 2 and "no run" in result.output
    result = cli.invoke(app, ["export", runs["ramp"], "--format", "xlsx", *db])
    assert result.exit_code == 2 and "'xlsx' is not one of 'csv', 'json', 'hdf5'" in result.output


def test_optimisation_runs_get_a_progress_panel(lab, store):
    """A start document naming an ``objective`` adds the objective-per-iteration panel."""
    RE = RunEngine({}, context_managers=[])
    RE.subscribe(store)
    (plain,) = RE(count([lab["thermometer"]], num=5))
    (optimised,) = RE(
        count([lab["thermometer"]], num=5), objective="thermometer_temperature", goal="min"
    )
    (by_plan,) = RE(  # the form remotelab's optimisation plan records
        count([lab["thermometer"]], num=5),
        optimizer={"objective": "thermometer_temperature", "direction": "minimize"},
    )
    store.wait_plots()
    runs = (plain, optimised, by_plan)
    heights = [imread(io.BytesIO(store.plot(u)), format="png").shape[0] for u in runs]
    assert heights[1] > heights[0] * 1.5 and heights[2] == heights[1]
