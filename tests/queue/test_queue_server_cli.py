"""The server side (pool, queues, deployment, idempotently) and the queue commands."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from uuid import UUID

import httpx
import pytest
from queue_helpers import subprocess_env, wait_until
from typer.testing import CliRunner

from remotelab.cli import app
from remotelab.queue import ExperimentState, connect, ensure_lab, pool_name

runner = CliRunner()


def test_ensure_lab_is_idempotent(prefect_api):
    client = connect(prefect_api)
    first = ensure_lab(client, "idem-lab")
    again = ensure_lab(client, "idem-lab")
    assert first == again
    pool = client.read_work_pool(pool_name("idem-lab"))
    assert pool.type == "remotelab"
    queues = {q.name: q.priority for q in client.read_work_queues(work_pool_name=pool.name)}
    assert queues["urgent"] < queues["normal"] < queues["low"]
    deployment = client.read_deployment(first)
    assert deployment.name == "idem-lab" and deployment.work_pool_name == pool.name


def test_server_command_sets_up_labs_on_an_existing_api(prefect_api, lab_file, lab):
    result = runner.invoke(
        app, ["server", "--api", prefect_api, "--lab", str(lab_file), "--no-gateway"]
    )
    assert result.exit_code == 0, result.output
    assert f"lab {lab.name}" in result.output
    client = connect(prefect_api)
    assert client.read_work_pool(pool_name(lab.name)).name == pool_name(lab.name)


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_experiment_commands_on_this_machine(prefect_api, lab_file, exq):
    """No gateway configured: submit, edit, queue, show, move, prioritise, cancel and lab
    hold/release
    work on this machine's Prefect."""
    common = ["--lab", str(lab_file), "--api", prefect_api]
    assert "hold done" in _ok("lab", "hold", *common)
    first = json.loads(_ok("submit", "steps", *common, "-p", "n=1", "--submitter", "ada", "--json"))
    assert exq.get(first["id"]).submitter == "ada" and first["params"] == {"n": 1}
    second = json.loads(_ok("submit", "steps", *common, "-p", "n=2", "--priority", "low", "--json"))
    listed = json.loads(_ok("queue", *common, "--json"))
    assert [e["id"] for e in listed] == [first["id"], second["id"]]
    table = runner.invoke(app, ["queue", *common], terminal_width=200).output
    assert "HELD" in table and "2 of 2" in table
    assert json.loads(_ok("show", second["id"], *common, "--json"))["priority"] == "low"
    _ok("prioritise", second["id"], "urgent", *common)
    listed = json.loads(_ok("queue", *common, "--json"))
    assert [e["id"] for e in listed] == [second["id"], first["id"]]
    _ok("move", second["id"], "--to", "back", *common)
    assert exq.waiting()[-1].id == second["id"]
    edited = json.loads(_ok("edit", second["id"], "-p", "n=3", *common, "--by", "bo", "--json"))
    assert edited["params"] == {"n": 3} and exq.get(second["id"]).params == {"n": 3}
    assert [e["by"] for e in exq.get(second["id"]).edits] == ["bo"]
    shown = runner.invoke(app, ["show", second["id"], *common], terminal_width=200).output
    assert "edited" in shown and 'by bo; before: {"n": 2}' in shown
    assert exq.waiting()[-1].id == second["id"]  # it kept its place
    bad = runner.invoke(app, ["submit", "steps", *common, "-p", "n=0"])
    assert bad.exit_code == 2 and "n" in bad.output
    bad = runner.invoke(app, ["edit", second["id"], *common, "-p", "n=0"])
    assert bad.exit_code == 2 and "n" in bad.output and exq.get(second["id"]).params == {"n": 3}
    out = _ok("cancel", first["id"], *common, "--reason", "test", "--by", "ada")
    assert "cancelled" in out and exq.get(first["id"]).state == ExperimentState.cancelled
    finished = json.loads(_ok("queue", *common, "--history", "--json"))
    assert first["id"] in [e["id"] for e in finished]
    _ok("cancel", second["id"], *common)

    # submit --watch ends when the experiment ends without a run (cancelled while queued)
    def cancel_when_queued() -> None:
        wait_until(
            lambda: [e for e in exq.waiting() if e.submitter == "watcher"], what="the submission"
        )
        (mine,) = [e for e in exq.waiting() if e.submitter == "watcher"]
        exq.cancel(mine.id, reason="not today", by="ada")

    canceller = threading.Thread(target=cancel_when_queued)
    canceller.start()
    watched = runner.invoke(
        app, ["submit", "steps", *common, "-p", "n=1", "--submitter", "watcher", "--watch"]
    )
    canceller.join()
    assert watched.exit_code == 1, watched.output
    assert "ended cancelled before a run was seen" in " ".join(watched.output.split())
    assert "release done" in _ok("lab", "release", *common)
    assert not exq.is_held()


def test_approve_answer_and_steer_on_this_machine(prefect_api, tmp_path, start_worker):
    """Approval, an operator question, and lab pause/resume/abort through the lab's control
    channel, from the command line on this machine."""
    from queue_helpers import write_lab

    from remotelab.lab import load_lab
    from remotelab.queue import ExperimentQueue

    lab_file = write_lab(tmp_path, approval={"plans": ["confirm_then_read"]})
    common = ["--lab", str(lab_file), "--api", prefect_api]
    lab = load_lab(lab_file, speed=1000)
    with ExperimentQueue(lab, api_url=prefect_api) as q:
        q.ensure()
        start_worker(lab)
        asked = json.loads(_ok("submit", "confirm_then_read", *common, "--json"))
        assert asked["state"] == "waiting_for_approval"
        assert "queued" in _ok("approve", asked["id"], *common, "--by", "mia")
        wait_until(lambda: q.question(asked["id"]), timeout=60, what="the operator question")
        assert "answered True" in _ok("answer", asked["id"], "yes", *common)
        assert q.wait_for(asked["id"]).state == ExperimentState.completed

        long = json.loads(_ok("submit", "steps", *common, "-p", "n=100000", "--json"))
        wait_until(
            lambda: q.get(long["id"]).state == ExperimentState.running,
            timeout=60,
            what="the long experiment running",
        )
        wait_until(lambda: lab["stirrer"].setpoint.get() == 300, timeout=30, what="stirring")
        pending = _ok("lab", "pause", *common)  # at the next checkpoint: said to be pending
        assert "pause: pause requested: pending until the plan's next checkpoint" in pending
        resumed = _ok("lab", "resume", *common)  # not refused: called off (or resumed)
        assert any(
            said in resumed for said in ("the pending pause was called off", "resumed", "done")
        ), resumed
        wait_until(
            lambda: [e.get("re_state") for e in q.reservations()["running"]] == ["running"],
            timeout=30,
            what="its RunEngine running on",
        )
        assert "pause: paused" in _ok("lab", "pause", "--immediate", *common)
        wait_until(
            lambda: q.get(long["id"]).state == ExperimentState.paused, timeout=30, what="paused"
        )
        assert "resume done" in _ok("lab", "resume", *common)
        wait_until(
            lambda: q.get(long["id"]).state == ExperimentState.running, timeout=30, what="resumed"
        )
        assert "abort done" in _ok("lab", "abort", "--reason", "enough", *common)
        assert q.wait_for(long["id"]).state == ExperimentState.cancelled
        assert lab["stirrer"].setpoint.get() == 0  # the safe state
        done = json.loads(_ok("submit", "steps", *common, "-p", "n=2", "--wait", "--json"))
        assert done["state"] == "completed" and len(done["run_uids"]) == 1
    lab.close()


def test_server_serves_the_gateway_until_sigterm(prefect_api, lab_file, lab, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "remotelab",
            "server",
            "--api",
            prefect_api,
            "--lab",
            str(lab_file),
            "--gateway-port",
            str(port),
        ],
        env=subprocess_env(prefect_api, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/v1/labs"

        def answers():
            try:
                return httpx.get(url, timeout=2)
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode()
                return None

        reply = wait_until(answers, timeout=90, what="the gateway")
        assert reply.status_code == 401  # it is the gateway: no token, no entry
        assert "token" in reply.json()["detail"].lower()
        dashboard = f"http://127.0.0.1:{port}/dashboard"
        assert httpx.get(dashboard, timeout=10).status_code == 200  # the page needs no token
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        output = proc.stdout.read().decode()
        assert f"lab {lab.name}" in output
        assert f"dashboard: {dashboard}" in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_database_prefect_cannot_use_is_refused_without_its_password(tmp_path):
    from remotelab.errors import QueueError
    from remotelab.queue.server import PrefectServer

    with pytest.raises(QueueError, match=r"postgresql\+asyncpg://USER:PASSWORD@HOST:PORT/DB"):
        PrefectServer(tmp_path, database="mysql://lab:s3cret@db/prefect")
    result = runner.invoke(
        app, ["server", "--home", str(tmp_path), "--database", "mysql://lab:s3cret@db/prefect"]
    )
    assert result.exit_code == 2 and "mysql://lab:***@db/prefect" in result.output
    assert "s3cret" not in result.output


def test_the_postgresql_server_keeps_the_queue_in_postgresql(remotelab_prefect_postgres, lab):
    """The server given --database keeps its flow runs in that database, not in SQLite."""
    import asyncio

    import asyncpg

    from remotelab.queue import ExperimentQueue

    server = remotelab_prefect_postgres
    assert server.database is not None and not list(server.home.glob("*.db"))
    with ExperimentQueue(lab, api_url=server.api_url) as queue:
        exp = queue.submit("measure", {"detectors": ["thermometer"]}, submitter="ada")
        queue.cancel(exp.id, by="ada")

    async def stored() -> int:
        conn = await asyncpg.connect(server.database.replace("postgresql+asyncpg", "postgresql"))
        try:
            return await conn.fetchval("SELECT count(*) FROM flow_run WHERE id = $1", UUID(exp.id))
        finally:
            await conn.close()

    assert asyncio.run(stored()) == 1
