"""``remotelab plans`` and ``remotelab run``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from remotelab.cli import app
from remotelab.cli import plans as cli_plans
from remotelab.data import RunStore

SRC = Path(__file__).resolve().parents[1] / "src"
runner = CliRunner()


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch) -> Path:
    """Every run these tests make goes to a run store of their own."""
    path = tmp_path / "data"
    monkeypatch.setenv("REMOTELAB_DATA_DIR", str(path))
    return path


@pytest.fixture
def labs(monkeypatch) -> list:
    """The labs ``remotelab run`` loads, kept for a look after the command."""
    loaded = []

    def keep(*args, **kwargs):
        loaded.append(cli_plans.load_lab.__wrapped__(*args, **kwargs))
        return loaded[-1]

    keep.__wrapped__ = cli_plans.load_lab
    monkeypatch.setattr(cli_plans, "load_lab", keep)
    return loaded


def test_plans_lists_every_plan_with_its_parameters():
    result = runner.invoke(app, ["plans"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name in ("measure", "scan", "temperature_ramp", "measure_samples", "titration"):
        assert name in result.output
    assert "setpoints" in result.output and "degC" in result.output


def test_plans_json_gives_schemas_and_role_filter(tmp_path):
    result = runner.invoke(app, ["plans", "--json"])
    listed = json.loads(result.output)
    assert {p["name"] for p in listed} >= {"measure", "optimize", "titration"}
    assert listed[0]["schema"]["type"] == "object"


def test_run_prints_a_table_of_the_readings():
    result = runner.invoke(
        app,
        [
            "run",
            "measure",
            "--speed",
            "1000",
            "-p",
            "detectors=thermometer,ph_meter",
            "-p",
            "num=2",
        ],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    assert "thermometer_temperature" in result.output
    assert "ph_meter_ph" in result.output
    assert "2/2" in result.output  # the progress bar


def test_run_json_gives_the_readings():
    result = runner.invoke(
        app,
        [
            "run",
            "temperature_ramp",
            "--speed",
            "2000",
            "--json",
            "-p",
            "setpoints=[30]",
            "-p",
            "detectors=thermometer",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["outcome"] == "success"
    (event,) = out["events"]
    assert event["data"]["thermometer_temperature"] == pytest.approx(30, abs=0.3)


def test_run_rejects_a_bad_submission_with_the_problem_named():
    result = runner.invoke(app, ["run", "measure", "-p", "num=0", "--speed", "1000"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "num: Input should be greater than or equal to 1 (got 0)" in text
    unknown = runner.invoke(app, ["run", "dance"])
    assert unknown.exit_code == 2 and "unknown plan 'dance'" in unknown.output


def test_run_refuses_a_plan_the_lab_cannot_carry_out():
    # the arm cannot bring a sample to a station that is occupied (by T001)
    result = runner.invoke(
        app,
        [
            "run",
            "measure_samples",
            "--speed",
            "1000",
            "-p",
            "samples=S001",
            "-p",
            "station=titration",
        ],
    )
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "station: station 'titration' is occupied by sample 'T001'" in text


def test_remotelab_run_with_no_arguments_measures_and_prints_a_table(data_dir):
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "COLUMNS": "200",
        "REMOTELAB_DATA_DIR": str(data_dir),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "remotelab", "run", "--speed", "1000"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "measure on simlab (simulated)" in proc.stdout
    assert "thermometer_temperature" in proc.stdout
    assert "3/3" in proc.stdout


def test_an_unknown_role_is_refused_naming_the_roles():
    for args in (["plans", "--role", "obsrever"], ["run", "--role", "obsrever", "--speed", "1000"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        said = " ".join(result.output.split())
        assert "'obsrever' is not one of 'observer', 'researcher', 'manager', 'admin'" in said
    observer = runner.invoke(app, ["plans", "--role", "observer", "--json"])
    assert observer.exit_code == 0 and json.loads(observer.output) == []


def test_run_stores_the_run_and_prints_its_experiment_and_uid(data_dir, tmp_path):
    result = runner.invoke(
        app,
        ["run", "measure", "--speed", "1000", "-p", "num=2", "-p", "detectors=thermometer"],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    with RunStore(data_dir / "runs.sqlite", plots=False) as store:
        (run,) = store.runs()
        assert (run.plan_name, run.status, run.num_events) == ("measure", "success", 2)
        assert store.verify(run.uid).ok
    assert f"run {run.uid}" in result.output
    assert f"experiment {run.experiment_id}" in result.output
    assert f"remotelab export {run.uid} --format csv" in result.output
    # the hint works
    exported = runner.invoke(
        app, ["export", run.uid, "--format", "csv", "-o", str(tmp_path / "out")]
    )
    assert exported.exit_code == 0, exported.output
    (csv,) = (tmp_path / "out").glob("*.csv")
    assert "thermometer_temperature" in csv.read_text()


def test_run_json_names_the_stored_run_and_no_store_keeps_nothing(data_dir):
    args = ["run", "measure", "--speed", "1000", "-p", "num=1", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    with RunStore(data_dir / "runs.sqlite", plots=False) as store:
        assert [r.uid for r in store.runs()] == out["run_uids"]
        assert store.run(out["run_uids"][0]).experiment_id == out["experiment_id"]
    unstored = runner.invoke(app, [*args, "--no-store"])
    assert unstored.exit_code == 0, unstored.output
    assert json.loads(unstored.output)["store"] is None
    with RunStore(data_dir / "runs.sqlite", plots=False) as store:
        assert len(store.runs()) == 1


def test_run_brings_the_lab_to_its_safe_state_unless_keep_state(labs):
    # a scan leaves the heater where it ended (temperature_ramp ends at its safe setpoint)
    args = ["run", "scan", "--speed", "2000", "--json", "-p", "motor=heater"]
    args += ["-p", "start=30", "-p", "stop=30", "-p", "num=2"]
    for extra, setpoint in (([], 25), (["--keep-state"], 30)):
        result = runner.invoke(app, [*args, "-p", "detectors=thermometer", *extra])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["outcome"] == "success"
        zone = labs[-1].world.zone("heater")
        assert zone.setpoint == setpoint, extra


def test_run_help_says_what_it_does():
    result = runner.invoke(app, ["run", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "run it on this machine's lab (default: `measure`, simulated lab)" in text
    for option in ("--no-store", "--keep-state", "--speed", "--role"):
        assert option in text
