"""The gateway side of the CLI (``RemoteBackend``): each operation of the ``Backend``
protocol through a real HTTP gateway. No worker serves the lab: everything stays queued."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import free_port
from rich.console import Console
from typer.testing import CliRunner

from remotelab import Client
from remotelab.api.server import GatewayServer
from remotelab.cli import render
from remotelab.cli.app import app
from remotelab.cli.backend import Backend, Done
from remotelab.cli.local import LocalBackend
from remotelab.cli.remote import RemoteBackend
from remotelab.errors import ApiInvalid, QueueError, RemotelabError
from remotelab.queue import ExperimentState, listing

ONE = {"detectors": ["thermometer"], "num": 1}


@pytest.fixture(scope="module")
def url(site) -> Iterator[str]:
    server = GatewayServer(site.app, port=free_port()).start()
    yield server.url
    server.stop()


def test_experiment_operations_through_the_gateway(site, url):
    side: Backend = RemoteBackend(Client(url, site.tokens["manager"], lab=site.name))
    with side:
        assert side.lab_name() == site.name
        assert "num" in side.schema("measure")["properties"]
        exp = side.submit("measure", ONE, priority="low")
        assert exp.submitter == "mia" and side.experiment(exp.id).priority.value == "low"
        items, total = side.experiments(states=None, submitter="mia", plan="measure", limit=100)
        assert exp.id in [e.id for e in items] and total >= 1
        mine, _ = side.experiments(states=None, submitter=None, plan=None, limit=100, mine=True)
        assert {e.submitter for e in mine} == {"mia"}
        assert side.prioritise(exp.id, "urgent").priority.value == "urgent"
        assert side.edit(exp.id, {"num": 2}).params["num"] == 2
        assert side.move(exp.id, to="back").id == exp.id
        assert side.cancel(exp.id, reason="enough").state == ExperimentState.cancelled
        finished, _ = side.experiments(states=["cancelled"], submitter=None, plan=None, limit=10)
        assert exp.id in [e.id for e in finished]
        assert side.wait(exp.id).state == ExperimentState.cancelled


def test_approval_and_lab_commands_through_the_gateway(site, url):
    researcher = RemoteBackend(Client(url, site.tokens["researcher"], lab=site.name))
    manager = RemoteBackend(Client(url, site.tokens["manager"], lab=site.name))
    scan = {"motor": "heater", "start": 25, "stop": 30, "num": 2, "detectors": ["thermometer"]}
    with researcher, manager:
        gated = researcher.submit("scan", scan, priority="normal")
        assert gated.state == ExperimentState.waiting_for_approval
        assert manager.approve(gated.id).state == ExperimentState.queued
        refused = researcher.submit("scan", scan, priority="normal")
        assert manager.reject(refused.id, reason="no").state == ExperimentState.cancelled
        assert manager.hold() == Done(site.name) and manager.is_held()
        assert manager.release() == Done(site.name) and not manager.is_held()
        manager.cancel(gated.id)


def test_runs_and_export_through_the_gateway(site, url, tmp_path, capsys):
    with RemoteBackend(Client(url, site.tokens["researcher"], lab=site.name)) as side:
        path, *arrays = side.export(site.run_uid, "csv", tmp_path)
        assert path.read_text().startswith("seq_num,time") and arrays
        side.runs(
            experiment=None, sample=None, plan="measure", submitter=None, limit=5, as_json=True
        )
    assert site.run_uid in capsys.readouterr().out


def _files(paths: list[Path]) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in paths}


def test_data_commands_do_through_the_gateway_what_they_do_here(site, url, tmp_path, monkeypatch):
    """export (every format, array signals, another stream, file names), plot and verify:
    the same files and answers through the gateway as on the lab machine, by a uid prefix."""
    prefix = site.run_uid[:8]
    remote = RemoteBackend(Client(url, site.tokens["researcher"], lab=site.name))
    here = LocalBackend(None, store=Path(site.store.path))
    with remote, here:
        for fmt in ("csv", "json", "hdf5"):
            there = _files(remote.export(prefix, fmt, tmp_path / "gateway" / fmt))
            local = _files(here.export(prefix, fmt, tmp_path / "local" / fmt))
            assert sorted(there) == sorted(local), fmt
            if fmt == "csv":
                assert there == local and len(there) > 1
            if fmt == "json":
                assert [json.loads(b) for b in there.values()] == [
                    json.loads(b) for b in local.values()
                ]
        for side in (remote, here):
            with pytest.raises(RemotelabError, match=r"no stream 'endpoint'.*its streams: primary"):
                side.export(prefix, "csv", tmp_path / "none", stream="endpoint")
        shown = remote.plot(prefix, tmp_path / "gateway.png")
        assert shown.read_bytes().startswith(b"\x89PNG")
        assert remote.verify(prefix) == here.verify(prefix)
        assert remote.verify(prefix)["ok"] and remote.verify(prefix)["uid"] == site.run_uid
    token = site.tokens["researcher"]
    runner = CliRunner()
    at = ["--url", url, "--token", token]
    checked = runner.invoke(app, ["verify", prefix, *at])
    assert checked.exit_code == 0 and f"OK {site.run_uid}" in checked.output, checked.output
    monkeypatch.chdir(tmp_path)
    drawn = runner.invoke(app, ["plot", prefix, *at])
    assert drawn.exit_code == 0 and drawn.output.strip() == f"run-{prefix}.png"
    assert Path(f"run-{prefix}.png").is_file()
    exported = runner.invoke(app, ["export", prefix, "-f", "json", "--stream", "primary", *at])
    assert exported.output.split() == [f"run-{prefix}.primary.json"], exported.output


def test_a_priority_not_in_the_choices_is_a_typed_error_on_both_sides(site, url, prefect_api):
    """What a script gives the backends (the CLI refuses it before): a 422, not a traceback."""
    with RemoteBackend(Client(url, site.tokens["manager"], lab=site.name)) as side:
        with pytest.raises(ApiInvalid, match=r"priority"):
            side.submit("measure", ONE, priority="asap")
        with pytest.raises(ApiInvalid, match=r"priority"):
            side.client.experiments(priority="asap")
    here = LocalBackend(site.lab.source, api=prefect_api)
    with here, pytest.raises(QueueError, match=r"unknown priority 'asap'; use one of urgent"):
        here.submit("measure", ONE, priority="asap")


def test_experiments_go_by_a_unique_prefix_of_their_id_on_both_sides(site, url, prefect_api):
    exp = site.queue.submit("measure", ONE, submitter="mia", role="manager")
    prefix = exp.id[:8]
    runner = CliRunner()
    gateway = ["--url", url, "--token", site.tokens["manager"]]
    here = ["--local", "--lab", site.lab.source, "--api", prefect_api]
    for side in (gateway, here):
        shown = runner.invoke(app, ["show", prefix, "--json", *side])
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.output)["id"] == exp.id
        moved = runner.invoke(app, ["move", prefix, "--to", "back", *side])
        assert moved.exit_code == 0 and exp.id in moved.output, moved.output
        short = runner.invoke(app, ["show", exp.id[:3], *side])
        assert short.exit_code == 2 and f"no experiment {exp.id[:3]}" in short.output
    with LocalBackend(site.lab.source, api=prefect_api) as local:  # watch follows the full id
        assert local._full_id(prefix) == exp.id and local._full_id("E-x") == "E-x"
    with RemoteBackend(Client(url, site.tokens["manager"], lab=site.name)) as side:
        assert side.cancel(prefix).state == ExperimentState.cancelled
    # a table keeps whole ids, however narrow the terminal
    narrow = Console(width=80, record=True, file=io.StringIO())
    narrow.print(render.experiments_table([site.queue.get(exp.id)], "queue"))
    assert exp.id in narrow.export_text()


def test_a_prefix_of_several_experiments_ids_is_refused(site, monkeypatch):
    ids = [site.queue.submit("measure", ONE, submitter="mia", role="manager").id for _ in range(17)]
    firsts = [i[0] for i in ids]  # 17 ids, 16 hex digits: two share their first
    shared = next(c for c in firsts if firsts.count(c) > 1)
    monkeypatch.setattr(listing, "MIN_PREFIX", 1)
    with pytest.raises(QueueError, match=rf"{shared} is the start of \d+ experiments' ids"):
        site.queue.get(shared)
    for i in ids:
        site.queue.cancel(i)
