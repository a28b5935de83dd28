"""The gateway with several experiments running at once: per-experiment control routes, the
lab-wide forms' 409 naming them (abort: all), the reservations and why experiments wait. On
the in-memory Prefect adapter with stub workers answering over a real control channel."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_helpers import write_lab
from fastapi.testclient import TestClient

from _several_support import MEASURE, StubWorker, start, stub
from remotelab.api import AuthStore, LabService, create_app
from remotelab.api.app import API_PREFIX
from remotelab.client import ApiConflict, Client
from remotelab.lab import load_lab
from remotelab.queue import ExperimentQueue
from remotelab.queue.commands import Abort, Pause, Resume, Stop
from remotelab.queue.fake import FakePrefectLab
from remotelab.queue.service import default_registry

ROLES = {"observer": "olga", "researcher": "alice", "manager": "mia"}


class Site:
    def __init__(self, tmp) -> None:
        self.lab = load_lab(write_lab(tmp), speed=1000)
        self.fake = FakePrefectLab(self.lab.name)
        reg = default_registry(self.lab)
        self.q = ExperimentQueue(self.lab, prefect=self.fake, registry=reg, notify=False)
        self.auth = AuthStore(tmp / "auth.sqlite")
        self.tokens = {}
        for role, user in ROLES.items():
            self.auth.add_user(user, role)
            self.tokens[role] = self.auth.create_token(user, "tests").token
        self.app = create_app(auth=self.auth, labs=[LabService(self.lab, self.q)])
        self.stubs: list[StubWorker] = []

    def post(self, client, path: str, who: str = "manager", json=None):
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return client.post(f"{API_PREFIX}/labs/{self.lab.name}{path}", headers=headers, json=json)

    def get(self, client, path: str, who: str = "observer"):
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return client.get(f"{API_PREFIX}/labs/{self.lab.name}{path}", headers=headers)


@pytest.fixture
def site(tmp_path) -> Iterator[Site]:
    made = Site(tmp_path)
    yield made
    for s in made.stubs:
        s.close()
    made.auth.close()
    made.lab.close()


@pytest.fixture
def client(site) -> Iterator[TestClient]:
    with TestClient(site.app) as c:
        yield c


def test_lab_wide_controls_answer_409_listing_the_running(site, client):
    w = stub(site.fake, site.stubs)
    a, b = start(site.q, site.fake, w, 2)
    for action in ("pause", "resume", "stop"):
        r = site.post(client, f"/{action}")
        assert r.status_code == 409, r.text
        body = r.json()
        assert body["type"] == "SeveralRunningError" and body["running"] == [a, b]
        assert a in body["detail"] and b in body["detail"]
    assert w.got == []
    r = site.post(client, "/abort", json={"reason": "all of them"})
    assert r.status_code == 200, r.text
    assert sorted(c.experiment for c in w.got) == sorted([a, b])
    assert all(isinstance(c, Abort) for c in w.got)


def test_per_experiment_routes_reach_that_experiment_and_are_audited(site, client):
    w = stub(site.fake, site.stubs)
    a, b = start(site.q, site.fake, w, 2)
    for action, body in (("pause", {"immediate": True}), ("resume", None), ("stop", None)):
        r = site.post(client, f"/experiments/{b}/{action}", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["experiment"] == b and r.json()["action"] == action
    r = site.post(client, f"/experiments/{a}/abort", json={"reason": "wrong sample"})
    assert r.status_code == 200
    assert [(type(c), c.experiment) for c in w.got] == [
        (Pause, b),
        (Resume, b),
        (Stop, b),
        (Abort, a),
    ]
    assert w.got[-1].reason == "wrong sample"
    actions = {e.action: e for e in site.auth.audit(lab=site.lab.name, limit=100)}
    for action in ("pause", "resume", "stop", "abort"):
        assert actions[f"experiment.{action}"].actor == "mia"


def test_per_experiment_controls_need_a_manager_and_a_running_experiment(site, client):
    w = stub(site.fake, site.stubs)
    (a,) = start(site.q, site.fake, w, 1)
    for who in ("observer", "researcher"):
        assert site.post(client, f"/experiments/{a}/pause", who=who).status_code == 403
    queued = site.q.submit("measure", MEASURE, submitter="alice")
    r = site.post(client, f"/experiments/{queued.id}/stop")
    assert r.status_code == 409 and "not running" in r.json()["detail"]
    missing = "00000000-0000-0000-0000-000000000000"
    assert site.post(client, f"/experiments/{missing}/stop").status_code == 404
    assert w.got == []


def test_reservations_shape_and_waiting_experiments(site, client):
    w = stub(site.fake, site.stubs)
    (a,) = start(site.q, site.fake, w, 1)
    queued = site.q.submit("measure", MEASURE, submitter="alice")
    why = f"waiting for thermometer, held by {a} since 10:42:05"
    w.reservations = {
        "thermometer": {
            "holder": a,
            "since": "2024-01-01T10:42:05+00:00",
            "block": False,
            "waiters": [{"experiment": queued.id, "since": "2024-01-01T10:43:00+00:00"}],
        }
    }
    w.waiting = {queued.id: why}
    r = site.get(client, "/reservations")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"reservations", "waiting", "running"}
    held = body["reservations"]["thermometer"]
    assert held["holder"] == a and held["waiters"][0]["experiment"] == queued.id
    assert body["waiting"] == {queued.id: why}
    assert [(e["id"], e["worker"]) for e in body["running"]] == [(a, "w1")]
    shown = site.get(client, f"/experiments/{queued.id}").json()
    assert shown["waiting_for"] == why and shown["devices"] == ["thermometer"]
    listed = site.get(client, "/experiments").json()["items"]
    assert {e["id"]: e["waiting_for"] for e in listed}[queued.id] == why
    devices = {d["name"]: d for d in site.get(client, "/devices").json()}
    assert devices["thermometer"]["experiment"] == a
    assert devices["thermometer"]["waiters"][0]["experiment"] == queued.id
    lab = site.get(client, "").json()
    assert [e["id"] for e in lab["running"]] == [a]
    assert site.get(client, "/reservations", who="researcher").status_code == 200


def test_client_methods(site, client):
    w = stub(site.fake, site.stubs)
    a, b = start(site.q, site.fake, w, 2)
    api = Client("http://testserver", token=site.tokens["manager"], lab=site.lab.name)
    api._http = TestClient(  # the app in this process
        site.app,
        base_url="http://testserver" + API_PREFIX,
        headers={"Authorization": f"Bearer {site.tokens['manager']}"},
    )
    with pytest.raises(ApiConflict) as err:
        api.pause()
    assert a in str(err.value)
    assert api.pause(experiment=a)["experiment"] == a
    assert api.abort("x", experiment=b)["experiment"] == b
    assert [r["id"] for r in api.reservations()["running"]] == [a, b]
