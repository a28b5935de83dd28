"""The gateway's routes behind the dashboard's pages, on a real Prefect server: the plans'
choices, an experiment's history, the audit log by target, the devices' state and readings,
the live feed's recent history, and ``/docs`` without a CDN."""

from __future__ import annotations

import json
import re

from remotelab.api.routes.labs import fault_of

SCAN = {"detectors": ["thermometer"], "motor": "stirrer", "start": 0, "stop": 100, "num": 3}


def get(site, path, who="observer", **params):
    r = site.client.get(f"/api/v1{path}", headers=site.headers(who), params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_plans_offer_the_labs_devices_and_samples_as_choices(site):
    plans = {p["name"]: p for p in get(site, f"/labs/{site.name}/plans", "researcher")}
    choices = plans["measure"]["choices"]
    detectors = [n for n, d in site.lab.devices.items() if type(d).__name__ != "Stirrer"]
    assert set(choices["detectors"]) <= set(detectors) and "thermometer" in choices["detectors"]
    assert "stirrer" not in choices["detectors"] and "heater" not in choices["detectors"]
    assert choices["sample_id"] == list(site.lab.tracker.samples)
    assert "stirrer" in plans["scan"]["choices"]["motor"]
    assert "thermometer" not in plans["scan"]["choices"]["motor"]


def test_an_experiments_history_has_its_states_and_requests(site):
    lab = site.name
    path = f"/api/v1/labs/{lab}/experiments"
    submitted = site.client.post(
        path, headers=site.headers("researcher"), json={"plan": "scan", "params": SCAN}
    )
    assert submitted.status_code == 201
    exp_id = submitted.json()["id"]
    refused = site.client.post(f"{path}/{exp_id}/approve", headers=site.headers("researcher"))
    assert refused.status_code == 403
    rejected = site.client.post(
        f"{path}/{exp_id}/reject", headers=site.headers("manager"), json={"reason": "no slot"}
    )
    assert rejected.status_code == 200

    seen = get(site, f"/labs/{lab}/experiments/{exp_id}/history")
    assert [s["state"] for s in seen["states"]] == ["waiting_for_approval", "cancelled"]
    assert seen["states"][-1]["message"] == "rejected by mia: no slot"
    assert [(a["action"], a["actor"], a["status"]) for a in seen["actions"]] == [
        ("experiment.submit", "alice", 201),
        ("experiment.reject", "mia", 200),
    ]
    assert seen["actions"][1]["detail"] == {"reason": "no slot"}
    assert "client" not in seen["actions"][0]
    # a manager also sees the refused request
    managed = get(site, f"/labs/{lab}/experiments/{exp_id}/history", "manager")
    assert ("experiment.approve", 403) in {(a["action"], a["status"]) for a in managed["actions"]}
    # and the audit log finds the same by target
    entries = get(site, "/audit", "manager", target=exp_id)
    assert {e["action"] for e in entries} == {
        "experiment.submit",
        "experiment.approve",
        "experiment.reject",
    }
    assert (
        site.client.get(
            f"/api/v1/labs/{lab}/experiments/{exp_id}/history", headers=site.headers("none")
        ).status_code
        == 401
    )


def test_devices_say_their_state_and_latest_reading(site):
    devices = {d["name"]: d for d in get(site, f"/labs/{site.name}/devices")}
    assert {d["state"] for d in devices.values()} == {"offline"}  # no worker here
    # before any live reading: the last event of the stored run (thermometer, spectrometer)
    (stored,) = site.store.runs(lab=site.name)
    last = site.store.table(stored.uid)
    reading = devices["thermometer"]["reading"]
    assert reading["stored"] is True and reading["time"] == float(last.time[-1])
    assert reading["values"] == {
        "thermometer_temperature": float(last.columns["thermometer_temperature"][-1])
    }
    assert devices["spectrometer"]["reading"]["values"]["spectrometer_absorbance"] == "array[201]"
    assert devices["heater"]["reading"] is None
    hub = site.app.state.gateway.live
    run, desc = "run-readings", "desc-readings"
    hub.dispatch("document", "start", {"uid": run, "lab": site.name, "experiment_id": "e1"})
    hub.dispatch(
        "document",
        "descriptor",
        {
            "uid": desc,
            "run_start": run,
            "name": "primary",
            "object_keys": {"thermometer": ["thermometer_temperature"], "spectrometer": ["sp"]},
        },
    )
    hub.dispatch(
        "document",
        "event",
        {
            "uid": "ev1",
            "descriptor": desc,
            "seq_num": 1,
            "time": 1.5e9,
            "data": {"thermometer_temperature": 21.5, "sp": [0.1, 0.2, 0.3]},
        },
    )
    by_name = {d["name"]: d for d in get(site, f"/labs/{site.name}/devices")}
    assert by_name["thermometer"]["reading"] == {  # the live one, newer than the stored
        "time": 1.5e9,
        "experiment": "e1",
        "values": {"thermometer_temperature": 21.5},
        "stored": False,
    }
    assert by_name["spectrometer"]["reading"]["values"] == {"sp": "array[3]"}
    assert by_name["heater"]["reading"] is None

    # the live feed starts with the recent history, each item marked replay
    hub.dispatch("document", "stop", {"uid": "stop1", "run_start": run, "exit_status": "success"})
    r = site.client.get(
        f"/api/v1/labs/{site.name}/events",
        headers=site.headers("observer"),
        params={"history": 10, "timeout": 0.3},
    )
    blocks = [b for b in r.text.split("\n\n") if b.startswith("event: document")]
    replayed = [json.loads(b.split("data: ", 1)[1]) for b in blocks]
    ours = {run, desc}
    names = [
        d["name"]
        for d in replayed
        if ours & {d["doc"]["uid"], d["doc"].get("run_start"), d["doc"].get("descriptor")}
    ]
    assert names == ["start", "descriptor", "event", "stop"]
    assert all(d["replay"] and d["at"] > 0 for d in replayed)


def test_a_fault_is_an_open_alert_naming_the_device():
    alerts = [{"message": "experiment x has made no progress for 90 s, waiting on set heater"}]
    assert fault_of("heater", alerts) == alerts[0]["message"]
    assert fault_of("heat", alerts) is None and fault_of("stirrer", alerts) is None


def test_docs_come_from_the_gateway_itself(site):
    page = site.client.get("/docs")
    assert page.status_code == 200
    assert not re.search(r"https?://", page.text)
    for asset in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert asset.startswith("/docs/assets/"), asset
        assert site.client.get(asset).status_code == 200
    assert site.client.get("/redoc").status_code == 404
