"""End to end through HTTP: a worker on the simulated lab, the stream proxy, the gateway on a
real port; the Python client submits, follows live documents, waits and exports; and, as a
new user would, ``remotelab demo`` in one process and the CLI in others."""

from __future__ import annotations

import itertools
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import httpx
import pytest
from api_helpers import SRC, free_port, write_lab
from typer.testing import CliRunner

from remotelab import Client
from remotelab.cli import app, console, render
from remotelab.embedded import Embedded
from remotelab.errors import (
    ApiConflict,
    ApiForbidden,
    ApiNotFound,
    ApiUnauthorized,
    PlanValidationError,
)
from remotelab.queue import ExperimentState

MEASURE = {"detectors": ["thermometer", "spectrometer"], "num": 3}


@pytest.fixture(scope="module")
def live(tmp_path_factory, prefect_api) -> Iterator[Embedded]:
    tmp = tmp_path_factory.mktemp("live")
    site = Embedded(tmp, lab_file=write_lab(tmp), port=free_port(), speed=1000, api_url=prefect_api)
    with site:
        site.auth.add_user("alice", "researcher")
        site.tokens["alice"] = site.auth.create_token("alice").token
        yield site


def test_client_submits_follows_live_waits_and_exports(live, tmp_path):
    with Client(live.url, live.tokens["alice"]) as c:
        assert c.whoami()["role"] == "researcher"
        assert {p["name"]: p["allowed"] for p in c.plans()}["measure"] is True
        exp = c.submit("measure", MEASURE)
        assert exp.submitter == "alice" and exp.lab == live.lab.name
        names = [name for name, _ in exp.documents()]
        assert names[0] == "start" and names[-1] == "stop"
        assert names.count("event") == 3
        done = exp.wait(timeout=60)
        assert done.state == ExperimentState.completed
        (uid,) = done.run_uids
        run = c.run(uid)
        assert run["experiment_id"] == exp.id and run["start"]["submitter"] == "alice"
        path = c.export(uid, "csv", tmp_path)
        lines = path.read_text().splitlines()
        assert lines[0].startswith("seq_num,time") and "thermometer" in lines[0]
        assert len(lines) == 4
        record = c.run_data(uid, "json")
        assert len(record["events"]) == 3
        h5 = c.export(uid, "hdf5", tmp_path)
        with h5py.File(h5) as f:
            assert "entry" in f
        assert c.plot(uid).startswith(b"\x89PNG")
        # the experiment's runs, by experiment
        assert [r["uid"] for r in c.experiment_runs(exp.id)] == [uid]
        # once it ended: the stored documents are replayed and the stream ends
        assert [n for n, _ in exp.documents()] == names


def test_client_errors_are_typed_and_say_what_was_wrong(live):
    with Client(live.url, live.tokens["alice"]) as c:
        with pytest.raises(PlanValidationError) as info:
            c.submit("measure", {"detectors": ["nope"], "num": 0})
        params = {e["param"] for e in info.value.errors}
        assert {"detectors", "num"} <= params
        with pytest.raises(ApiForbidden, match="may not run plan 'temperature_ramp'"):
            c.submit("temperature_ramp", {"setpoints": [30.0]})
        with pytest.raises(ApiNotFound):
            c.experiment("00000000-0000-0000-0000-000000000000")
        exp = c.submit("measure", {"detectors": ["thermometer"], "num": 1}).wait(timeout=60)
        with pytest.raises(ApiConflict, match="already ended"):
            c.cancel(exp.id)
    with Client(live.url, "rl_0123456789ab_" + "x" * 43) as bad, pytest.raises(ApiUnauthorized):
        bad.labs()


def test_approval_flow_and_audit(live):
    researcher = Client(live.url, live.tokens["alice"])
    manager = Client(live.url, live.tokens["demo-manager"])
    with researcher, manager:
        exp = researcher.submit(
            "scan",
            {"detectors": ["thermometer"], "motor": "stirrer", "start": 0, "stop": 100, "num": 2},
        )
        assert exp.state == ExperimentState.waiting_for_approval
        with pytest.raises(ApiForbidden):
            researcher.approve(exp.id)
        manager.approve(exp.id)
        assert exp.wait(timeout=60).state == ExperimentState.completed
        actions = [
            (e["actor"], e["action"], e["status"])
            for e in manager.audit(limit=20)
            if e["target"] == exp.id
        ]
        assert actions == [
            ("demo-manager", "experiment.approve", 200),
            ("alice", "experiment.approve", 403),
            ("alice", "experiment.submit", 201),
        ]
        # the provenance of a run names the audit chain's head as the gateway accepted it
        before = manager.audit(limit=1)[0]["hash"]
        second = researcher.submit("measure", MEASURE)
        (uid,) = second.wait(timeout=60).run_uids
        assert manager.run(uid)["start"]["audit_head"] == before
        report = manager.verify_audit(head=before)
        assert report["ok"] is True and report["head_found"] is True


def test_client_edits_a_waiting_experiment_and_the_worker_runs_the_edit(live):
    researcher = Client(live.url, live.tokens["alice"])
    manager = Client(live.url, live.tokens["demo-manager"])
    with researcher, manager:
        manager.hold()  # nothing starts while we edit
        try:
            exp = researcher.submit("measure", {"detectors": ["thermometer"], "num": 2})
            with pytest.raises(PlanValidationError) as info:
                exp.edit({"num": 0})
            assert [e["param"] for e in info.value.errors] == ["num"]
            edited = researcher.edit(exp.id, {"num": 4, "detectors": ["thermometer", "ph_meter"]})
            assert edited.state == ExperimentState.queued
            assert edited.params == {"detectors": ["thermometer", "ph_meter"], "num": 4}
            assert edited.edits[0]["by"] == "alice"
            assert edited.edits[0]["previous"] == {"detectors": ["thermometer"], "num": 2}
        finally:
            manager.release()
        done = edited.wait(timeout=60)
        assert done.state == ExperimentState.completed
        (uid,) = done.run_uids
        run = researcher.run(uid)
        assert run["start"]["plan_params"] == {"detectors": ["thermometer", "ph_meter"], "num": 4}
        assert run["start"]["edits"] == done.edits
        assert len(researcher.run_data(uid, "json")["events"]) == 4
        with pytest.raises(ApiConflict, match="completed; only an experiment that has not"):
            researcher.edit(exp.id, {"num": 1})


def test_live_status_reaches_the_lab_summary(live):
    with Client(live.url, live.tokens["alice"]) as c:
        c.submit("measure", {"detectors": ["thermometer"], "num": 2}).wait(timeout=60)
        deadline = time.monotonic() + 10
        while (status := c.lab()["status"]) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status is not None and status["lab"] == live.lab.name
        assert all(d["online"] for d in c.devices())


# -- the CLI through the gateway (REMOTELAB_URL/REMOTELAB_TOKEN, or --url/--token) ---------
@pytest.fixture(autouse=True)
def wide_tables(monkeypatch):
    monkeypatch.setattr(console, "width", 200)


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_reads_the_lab_through_the_gateway(live, tmp_path, monkeypatch):
    monkeypatch.setenv("REMOTELAB_URL", live.url)
    monkeypatch.setenv("REMOTELAB_TOKEN", live.tokens["alice"])
    catalog = {p["name"]: p for p in json.loads(_run("plans", "--json"))}
    assert catalog["measure"]["allowed"] and not catalog["temperature_ramp"]["allowed"]
    assert "needs approval" in _run("plans")
    assert "detectors" in json.loads(_run("plans", "measure"))["schema"]["properties"]
    devices = {d["name"]: d for d in json.loads(_run("devices", "--json"))}
    assert devices["thermometer"]["online"] and "safe_state" in devices["heater"]
    assert "thermometer" in _run("devices")
    lab = json.loads(_run("lab", "--json"))
    assert lab["name"] == live.lab.name and lab["held"] is False and lab["workers"] == 1
    assert {d["name"] for d in lab["devices"]} == set(devices)
    assert f"lab {live.lab.name}" in _run("lab", "show")

    exp = json.loads(_run("submit", "measure", "-p", "detectors=thermometer", "--wait", "--json"))
    assert exp["state"] == "completed" and exp["params"]["detectors"] == ["thermometer"]
    assert json.loads(_run("show", exp["id"], "--json"))["run_uids"] == exp["run_uids"]
    mine = json.loads(_run("queue", "--history", "--mine", "--json"))
    assert exp["id"] in [e["id"] for e in mine]
    (run,) = json.loads(_run("runs", "--experiment", exp["id"], "--json"))
    assert run["uid"] == exp["run_uids"][0] and run["submitter"] == "alice"
    assert run["uid"] in _run("runs", "-e", exp["id"])
    (path,) = _run("export", run["uid"][:8], "-f", "json", "-o", str(tmp_path)).split()
    assert json.loads(Path(path).read_text())["start"]["uid"] == run["uid"]
    lines = [json.loads(x) for x in _run("watch", exp["id"], "--json").splitlines()]
    assert lines[-1]["event"] == "end" and lines[-1]["data"]["state"] == "completed"

    # a lab-side option while a gateway is configured: said, not ignored
    wrong = CliRunner().invoke(app, ["runs", "--store", str(tmp_path / "runs.sqlite")])
    assert wrong.exit_code == 2 and "--store only works on this machine" in wrong.output
    assert "REMOTELAB_URL" in wrong.output and "--local" in wrong.output
    lab_file = CliRunner().invoke(app, ["queue", "--lab", "mylab.yaml"])
    assert lab_file.exit_code == 2 and "a lab file" in lab_file.output


def test_cli_orders_and_steers_through_the_gateway(live):
    alice = ["--url", live.url, "--token", live.tokens["alice"]]
    manager = ["--url", live.url, "--token", live.tokens["demo-manager"]]
    scan = ["-p", "detectors=thermometer", "-p", "motor=stirrer", "-p", "start=0"]
    scan += ["-p", "stop=100", "-p", "num=2"]
    assert "hold done" in _run("lab", "hold", *manager)
    try:
        assert "HELD" in _run("queue", *alice)
        first = json.loads(
            _run("submit", "measure", "-p", "detectors=thermometer", "--json", *alice)
        )
        second = json.loads(
            _run(
                "submit", "measure", "-p", "num=2", "-p", "detectors=thermometer", "--json", *alice
            )
        )
        ids = [e["id"] for e in json.loads(_run("queue", "--json", *alice))]
        assert ids.index(first["id"]) < ids.index(second["id"])
        _run("move", first["id"], "--to", "back", *alice)
        ids = [e["id"] for e in json.loads(_run("queue", "--json", *alice))]
        assert ids.index(second["id"]) < ids.index(first["id"])
        assert "urgent" in _run("prioritise", first["id"], "urgent", "--json", *manager)
        edited = json.loads(_run("edit", second["id"], "-p", "num=3", "--json", *alice))
        assert edited["params"]["num"] == 3 and edited["params"]["detectors"] == ["thermometer"]
        dropped = json.loads(_run("edit", second["id"], "-p", "detectors=null", "--json", *alice))
        assert "detectors" not in dropped["params"]  # the plan's default applies again
        bad = CliRunner().invoke(app, ["edit", second["id"], "-p", "num=0", *alice])
        assert bad.exit_code == 2 and "num" in bad.output
        other = ["--url", live.url, "--token", live.tokens["demo-researcher"]]
        theirs = CliRunner().invoke(app, ["edit", second["id"], "-p", "num=2", *other])
        assert theirs.exit_code == 2, theirs.output
        assert json.loads(_run("show", second["id"], "--json", *alice))["params"]["num"] == 3
        gated = json.loads(_run("submit", "scan", *scan, "--json", *alice))
        refused = json.loads(_run("submit", "scan", *scan, "--json", *alice))
        assert gated["state"] == refused["state"] == "waiting_for_approval"
        denied = CliRunner().invoke(app, ["approve", gated["id"], *alice])
        assert denied.exit_code == 2 and "manager" in denied.output
        assert "queued" in _run("approve", gated["id"], *manager)
        assert "cancelled" in _run("reject", refused["id"], "--reason", "no", *manager)
        for exp_id in (first["id"], second["id"], gated["id"]):
            assert "cancelled" in _run(
                "cancel", exp_id, *(manager if exp_id == gated["id"] else alice)
            )
        assert json.loads(_run("queue", "--mine", "--json", *alice)) == []
    finally:
        assert "release done" in _run("lab", "release", *manager)
    assert json.loads(_run("lab", "--json", *alice))["held"] is False


def test_watch_through_the_gateway_prints_readings_not_numpy_reprs_and_no_repeats(live):
    alice = ["--url", live.url, "--token", live.tokens["alice"]]
    spectra = ["-p", "detectors=thermometer,spectrometer", "-p", "num=5"]
    shown = _run("submit", "measure", *spectra, "--watch", *alice)
    assert "array(" not in shown and "\\n" not in shown
    events = [line for line in shown.splitlines() if line.startswith("event ")]
    assert len(events) == 5 and all("spectrometer_absorbance=[201 values]" in e for e in events)
    status = [line for line in shown.splitlines() if line.startswith("worker")]
    assert all(a != b for a, b in itertools.pairwise(status)), shown  # said once, each
    counts = [tuple(map(int, m)) for line in status for m in re.findall(r"(\d+)/(\d+)", line)]
    assert all(done <= total for done, total in counts), shown


def test_pause_says_what_happened_and_a_pending_pause_can_be_called_off(live):
    """Through the gateway: a pause at the next checkpoint says it is pending, and a resume
    right after is not refused; an immediate pause says paused, and every side agrees."""
    manager = ["--url", live.url, "--token", live.tokens["demo-manager"]]
    long = ["-p", "detectors=thermometer", "-p", "num=10000", "--json"]
    exp = json.loads(_run("submit", "measure", *long, *manager))
    with Client(live.url, live.tokens["demo-manager"]) as c:
        _wait(lambda: c.experiment(exp["id"]).state == ExperimentState.running, "it runs")
        pending = _run("lab", "pause", *manager)
        assert "pause: pause requested: pending until the plan's next checkpoint" in pending
        assert "done" not in pending
        resumed = _run("lab", "resume", *manager)  # called off, or resumed if it paused already
        assert any(
            said in resumed for said in ("the pending pause was called off", "resumed", "done")
        ), resumed

        def engine() -> str | None:
            running = c.reservations()["running"]
            return running[0].get("re_state") if running else None

        _wait(lambda: engine() == "running", "its RunEngine runs on")
        assert "pause: paused" in _run("lab", "pause", "--immediate", *manager)
        _wait(lambda: c.experiment(exp["id"]).state == ExperimentState.paused, "paused")
        summary = json.loads(_run("lab", "--json", *manager))
        assert [e["state"] for e in summary["running"]] == ["paused"]
        said = [
            render.status_line(e.data) for e in c.events(timeout=3) if e.kind == "status"
        ]  # the live status (watch, the dashboard) says so too
        assert said and said[-1].startswith(f"worker: {exp['id']} paused "), said
        assert "resume done" in _run("lab", "resume", *manager)
        _wait(lambda: c.experiment(exp["id"]).state == ExperimentState.running, "resumed")
        assert "abort" in _run("lab", "abort", *manager)
        assert c.experiment(exp["id"]).wait(timeout=60).state == ExperimentState.cancelled


def _wait(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not in {timeout} s")
        time.sleep(0.05)


# -- as a new user would: `remotelab demo`, then the CLI ------------------------------------
def _env(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "REMOTELAB_DATA_DIR": str(tmp / "data"),
        "REMOTELAB_CONFIG": str(tmp / "client.toml"),
    }


def _cli(tmp: Path, *args: str, url: str, token: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "remotelab", *args, "--url", url, "--token", token],
        env=_env(tmp),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp,
    )


def test_demo_then_cli_submit_watch_export(tmp_path):
    port = free_port()
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "remotelab",
            "demo",
            "--port",
            str(port),
            "--no-examples",
            "--speed",
            "100",
            "--data",
            str(tmp_path / "demo"),
        ],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in demo.stdout], daemon=True).start()
    seen, tokens = [], {}
    try:
        deadline = time.monotonic() + 180
        while not any(x.startswith("ready") for x in seen):
            assert time.monotonic() < deadline, "the demo did not start:\n" + "".join(seen)
            assert demo.poll() is None, "the demo exited:\n" + "".join(seen)
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(line)
            if line.startswith(("manager token:", "researcher token:")):
                tokens[line.split()[0]] = line.split()[-1]
            if line.startswith("Prefect UI:"):
                prefect_ui = line.split()[2]  # then where its auth string is
            if line.startswith("dashboard:"):
                dashboard = line.split()[1]
        url = f"http://127.0.0.1:{port}"
        token = tokens["researcher"]
        assert dashboard == f"{url}/dashboard"
        page = httpx.get(dashboard, timeout=10)
        assert page.status_code == 200 and "remotelab dashboard" in page.text

        sub = _cli(
            tmp_path,
            "submit",
            "measure",
            "-p",
            "detectors=thermometer",
            "-p",
            "num=3",
            "--wait",
            "--json",
            url=url,
            token=token,
        )
        assert sub.returncode == 0, sub.stderr
        exp = json.loads(sub.stdout)
        assert exp["state"] == "completed" and exp["submitter"] == "demo-researcher"

        watched = _cli(tmp_path, "watch", exp["id"], "--json", url=url, token=token)
        assert watched.returncode == 0, watched.stderr
        events = [json.loads(x) for x in watched.stdout.splitlines()]
        docs = [e["data"]["name"] for e in events if e["event"] == "document"]
        assert docs[0] == "start" and docs[-1] == "stop" and docs.count("event") == 3
        assert events[-1]["event"] == "end"

        out = tmp_path / "export"
        exported = _cli(
            tmp_path, "export", exp["id"], "-f", "csv", "-o", str(out), url=url, token=token
        )
        assert exported.returncode == 0, exported.stderr
        (csv_file,) = out.glob("*.csv")
        assert len(csv_file.read_text().splitlines()) == 4

        listed = _cli(tmp_path, "queue", "--state", "completed", "--json", url=url, token=token)
        assert exp["id"] in [e["id"] for e in json.loads(listed.stdout)]
        denied = _cli(tmp_path, "lab", "hold", url=url, token=token)
        assert denied.returncode == 2 and "needs the manager role" in denied.stderr
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(60)
    assert code == 0, "".join(seen)
    # everything stopped: the gateway and Prefect's server no longer answer
    for address in (url, prefect_ui):
        host, p = address.removeprefix("http://").split(":")
        with socket.socket() as s:
            assert s.connect_ex((host, int(p))) != 0
