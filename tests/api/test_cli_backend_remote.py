"""The gateway side of the CLI (``RemoteBackend``): each operation of the ``Backend``
protocol through a real HTTP gateway. No worker serves the lab: everything stays queued."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_helpers import free_port

from remotelab import Client
from remotelab.api.server import GatewayServer
from remotelab.cli.backend import Backend, Done
from remotelab.cli.remote import RemoteBackend
from remotelab.queue import ExperimentState

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
        (path,) = side.export(site.run_uid, "csv", tmp_path)
        assert path.read_text().startswith("seq_num,time")
        side.runs(
            experiment=None, sample=None, plan="measure", submitter=None, limit=5, as_json=True
        )
    assert site.run_uid in capsys.readouterr().out
