"""Which side a command works on (``--local``, ``--url``, REMOTELAB_URL, the login config
file, else this machine), and the lab side of the unified commands that need no Prefect."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from remotelab.cli import app
from remotelab.cli.target import gateway
from remotelab.data import RunStore
from remotelab.errors import CommandLineError

RUN_A = "abcd0000-0000-4000-8000-000000000001"
RUN_B = "abcd1111-0000-4000-8000-000000000002"


@pytest.fixture
def config(tmp_path, monkeypatch):
    """A config file as ``remotelab login`` writes it."""
    path = tmp_path / "client.toml"
    path.write_text('url = "http://config.example:8000"\ntoken = "from-config"\n')
    monkeypatch.setenv("REMOTELAB_CONFIG", str(path))
    return path


def test_nothing_configured_means_this_machine():
    assert gateway(None, None) is None
    with pytest.raises(CommandLineError, match="--token only works through a gateway"):
        gateway(None, "rl_token")


def test_precedence_local_then_url_then_environment_then_config_file(config, monkeypatch):
    def bearer(c) -> str | None:
        return c._http.headers.get("Authorization")

    with gateway(None, None) as c:  # the config file
        assert c.url == "http://config.example:8000" and bearer(c) == "Bearer from-config"
    with gateway("http://config.example:8000/", None) as c:  # its own gateway: its token
        assert bearer(c) == "Bearer from-config"
    monkeypatch.setenv("REMOTELAB_URL", "http://env.example:8000")
    with gateway(None, None) as c:  # the environment beats the config file
        assert c.url == "http://env.example:8000"
        assert bearer(c) is None  # the saved token is not sent to another gateway
    with gateway("http://flag.example:8000", None) as c:  # --url beats both
        assert c.url == "http://flag.example:8000" and bearer(c) is None
    assert gateway(None, None, local=True) is None  # --local beats every gateway
    with pytest.raises(CommandLineError, match="--local and --url contradict"):
        gateway("http://flag.example:8000", None, local=True)


def test_an_option_of_the_other_side_is_an_error(config):
    with pytest.raises(CommandLineError, match=r"--store only works on this machine.*config file"):
        gateway(None, None, lab_side={"--store": "runs.sqlite", "--api": None})
    with pytest.raises(CommandLineError, match=r"--lab labs/mine.yaml \(a lab file\)"):
        gateway(None, None, "labs/mine.yaml")
    with gateway(None, None, "simlab") as c:  # a lab's name is fine through a gateway
        assert c.lab_name() == "simlab"
    with pytest.raises(CommandLineError, match="--mine only works through a gateway"):
        gateway(None, None, local=True, remote_side={"--mine": True})


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "runs.sqlite"
    with RunStore(path, plots=False) as store:
        for uid, t in ((RUN_A, 1.0), (RUN_B, 2.0)):
            store("start", {"uid": uid, "time": t, "experiment_id": "E-both"})
            key = {"dtype": "number", "shape": [], "source": "sim"}
            desc = {"uid": f"d-{uid}", "run_start": uid, "name": "primary", "time": t}
            store("descriptor", {**desc, "data_keys": {"x": key}})
            event = {"uid": f"e-{uid}", "descriptor": desc["uid"], "seq_num": 1, "time": t}
            store("event", {**event, "data": {"x": t}, "timestamps": {"x": t}})
            stop = {"uid": f"s-{uid}", "run_start": uid, "time": t + 1, "exit_status": "success"}
            store("stop", stop)
    return path


def test_local_forces_this_machine_over_a_configured_gateway(config, db, tmp_path):
    runner = CliRunner()
    refused = runner.invoke(app, ["runs", "--store", str(db), "--json"])
    assert refused.exit_code == 2 and "add --local" in " ".join(refused.output.split())
    listed = runner.invoke(app, ["runs", "--store", str(db), "--json", "--local"])
    assert listed.exit_code == 0, listed.output
    assert [r["uid"] for r in json.loads(listed.output)] == [RUN_B, RUN_A]
    # an experiment id exports each of its runs, as through a gateway
    out = tmp_path / "out"
    exported = runner.invoke(
        app, ["export", "E-both", "-f", "csv", "-o", str(out), "--store", str(db), "--local"]
    )
    assert exported.exit_code == 0, exported.output
    assert len(list(out.glob("*.csv"))) == 2
    # and by a unique prefix of the experiment's id, as through a gateway
    again = tmp_path / "again"
    by_prefix = runner.invoke(
        app, ["export", "E-bo", "-f", "csv", "-o", str(again), "--store", str(db), "--local"]
    )
    assert by_prefix.exit_code == 0, by_prefix.output
    assert sorted(p.name for p in again.glob("*.csv")) == sorted(p.name for p in out.glob("*.csv"))


def test_plans_devices_and_lab_on_this_machine():
    runner = CliRunner()
    schema = json.loads(runner.invoke(app, ["plans", "measure"]).output)
    assert "detectors" in schema["properties"]
    devices = {d["name"]: d for d in json.loads(runner.invoke(app, ["devices", "--json"]).output)}
    assert devices["heater"]["safe_state"] == {"setpoint": 25.0}
    shown = json.loads(runner.invoke(app, ["lab", "show", "--json"]).output)
    assert set(shown["devices"]) == set(devices) and "S001" in {s["id"] for s in shown["samples"]}
    misplaced = runner.invoke(app, ["lab", "--json", "hold"])
    assert misplaced.exit_code == 2 and "after the subcommand" in " ".join(misplaced.output.split())
    unknown = runner.invoke(app, ["watch"])
    assert unknown.exit_code == 2 and "needs an experiment id" in " ".join(unknown.output.split())
