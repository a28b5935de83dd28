"""The server side (pool, queues, deployment, idempotently) and the queue commands."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import httpx
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


def test_queue_commands(prefect_api, lab_file, exq):
    common = ["--lab", str(lab_file), "--api", prefect_api]
    assert runner.invoke(app, ["queue", "hold", *common]).exit_code == 0
    out = runner.invoke(
        app,
        [
            "queue",
            "submit",
            "steps",
            *common,
            "-p",
            "n=1",
            "--submitter",
            "ada",
            "--priority",
            "low",
        ],
    )
    assert out.exit_code == 0, out.output
    exp_id = out.output.split()[0]
    assert exq.get(exp_id).plan == "steps"
    out = runner.invoke(app, ["queue", "list", *common, "--json"])
    listed = json.loads(out.output)
    assert listed["held"] is True and [e["id"] for e in listed["experiments"]] == [exp_id]
    bad = runner.invoke(app, ["queue", "submit", "steps", *common, "-p", "n=0"])
    assert bad.exit_code == 2 and "n" in bad.output
    out = runner.invoke(app, ["queue", "cancel", exp_id, *common, "--reason", "test"])
    assert out.exit_code == 0 and exq.get(exp_id).state == ExperimentState.cancelled
    assert runner.invoke(app, ["queue", "release", *common]).exit_code == 0
    assert not exq.is_held()


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
