"""PATCH /labs/{lab}/experiments/{id}: edit a waiting experiment's parameters through the
gateway (who may is in the authorization matrix; here: answers, records and the audit)."""

from __future__ import annotations

import uuid

from remotelab.api import API_PREFIX


def url(site, exp: str) -> str:
    return f"{API_PREFIX}/labs/{site.name}/experiments/{exp}"


def test_an_edit_answers_the_updated_experiment_and_is_audited(site):
    exp = site.submit("researcher")
    r = site.client.patch(
        url(site, exp), json={"params": {"num": 3}}, headers=site.headers("researcher")
    )
    assert r.status_code == 200
    body = r.json()
    assert body["params"] == {"detectors": ["thermometer"], "num": 3}
    assert body["state"] == "queued"
    assert [(e["by"], e["role"], e["previous"]["num"]) for e in body["edits"]] == [
        ("alice", "researcher", 1)
    ]
    shown = site.client.get(url(site, exp), headers=site.headers("observer")).json()
    assert shown["params"] == body["params"] and shown["edits"] == body["edits"]
    denied = site.client.patch(
        url(site, exp), json={"params": {"num": 2}}, headers=site.headers("researcher2")
    )
    assert denied.status_code == 403 and "someone else's" in denied.json()["detail"]
    by_manager = site.client.patch(
        url(site, exp), json={"params": {"num": 2}}, headers=site.headers("manager")
    )
    assert by_manager.status_code == 200 and by_manager.json()["edits"][-1]["by"] == "mia"
    entries = [
        e for e in site.auth.audit(action="experiment.edit", lab=site.name) if e.target == exp
    ]
    assert [(e.actor, e.status) for e in entries] == [("mia", 200), ("bob", 403), ("alice", 200)]
    assert entries[2].detail == {
        "params": {"num": 3},
        "previous": {"detectors": ["thermometer"], "num": 1},
    }


def test_bad_parameters_are_422_naming_each_parameter(site):
    exp = site.submit("researcher")
    r = site.client.patch(
        url(site, exp),
        json={"params": {"num": 0, "detectors": ["nope"]}},
        headers=site.headers("researcher"),
    )
    assert r.status_code == 422 and r.json()["type"] == "PlanValidationError"
    errors = {e["param"]: e["message"] for e in r.json()["errors"]}
    assert "greater than or equal to 1" in errors["num"]
    assert "unknown device 'nope'" in errors["detectors"]
    r = site.client.patch(url(site, exp), json={"num": 2}, headers=site.headers("researcher"))
    assert r.status_code == 422  # the body is {"params": {...}}
    shown = site.client.get(url(site, exp), headers=site.headers("researcher")).json()
    assert shown["params"]["num"] == 1 and shown["edits"] == []


def test_unknown_experiments_are_404(site):
    for exp in (str(uuid.uuid4()), "not-an-id"):
        r = site.client.patch(
            url(site, exp), json={"params": {"num": 2}}, headers=site.headers("manager")
        )
        assert r.status_code == 404


def test_an_empty_edit_is_422_and_records_nothing(site):
    exp = site.submit("researcher")
    r = site.client.patch(url(site, exp), json={"params": {}}, headers=site.headers("researcher"))
    assert r.status_code == 422
    assert "give at least one parameter to change" in r.json()["detail"]
    shown = site.client.get(url(site, exp), headers=site.headers("researcher")).json()
    assert shown["edits"] == [] and shown["state"] == "queued"


def test_a_run_held_by_an_edit_is_409_to_moves_and_other_edits(site):
    exp = site.submit("researcher")
    q = site.queue
    hold = q._hold_for_edit(q.client.read_flow_run(uuid.UUID(exp)), "alice")
    try:
        moved = site.client.post(
            url(site, exp) + "/move", json={"to": "front"}, headers=site.headers("manager")
        )
        assert moved.status_code == 409 and "being edited; retry" in moved.json()["detail"]
        prio = site.client.post(
            url(site, exp) + "/priority",
            json={"priority": "urgent"},
            headers=site.headers("manager"),
        )
        assert prio.status_code == 409 and "being edited; retry" in prio.json()["detail"]
        edited = site.client.patch(
            url(site, exp), json={"params": {"num": 2}}, headers=site.headers("manager")
        )
        assert edited.status_code == 409
        assert "being edited by someone else; retry" in edited.json()["detail"]
        listed = site.client.get(
            f"{API_PREFIX}/labs/{site.name}/experiments",
            params={"state": "queued"},
            headers=site.headers("observer"),
        )
        assert exp in [e["id"] for e in listed.json()["items"]]
    finally:
        q._release_edit(exp, hold, "alice", reapprove=False)
    shown = site.client.get(url(site, exp), headers=site.headers("observer")).json()
    assert shown["state"] == "queued" and shown["edits"] == [] and shown["priority"] == "normal"
