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
from remotelab.cli.plans import parse_params
from remotelab.errors import PlanValidationError

SRC = Path(__file__).resolve().parents[1] / "src"
runner = CliRunner()


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


def test_parse_params_reads_json_ish_values():
    schema = {
        "title": "x",
        "properties": {"detectors": {"anyOf": [{"type": "array"}, {"type": "null"}]}},
    }
    params = parse_params(
        [
            "num=3",
            "detectors=thermometer",
            "setpoints=[30, 40.5]",
            "name=S001",
            "flag=true",
            "pair=a,b",
        ],
        schema,
    )
    assert params == {
        "num": 3,
        "detectors": ["thermometer"],
        "setpoints": [30, 40.5],
        "name": "S001",
        "flag": True,
        "pair": ["a", "b"],
    }
    with pytest.raises(PlanValidationError, match="given more than once"):
        parse_params(["num=1", "num=2"], schema)
    with pytest.raises(PlanValidationError, match="write -p key=value"):
        parse_params(["num"], schema)


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


def test_remotelab_run_with_no_arguments_measures_and_prints_a_table():
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "200"}
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
