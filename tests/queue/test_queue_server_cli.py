"""The server side (pool, queues, deployment, idempotently) and the queue commands."""

from __future__ import annotations

import json

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
    result = runner.invoke(app, ["server", "--api", prefect_api, "--lab", str(lab_file)])
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
