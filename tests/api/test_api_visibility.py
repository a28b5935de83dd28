"""A lab whose file says ``visibility: own``: researchers (alice, bob) and observers see only
what they submitted — experiments, runs, data, plots, live documents — and another's answers
404 as what does not exist; its managers see everything. A lab that says nothing shows
everyone everything, as before."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from api_helpers import Site, free_port, make_site, store_one_run
from prefect.states import Running
from typer.testing import CliRunner

from remotelab.api import API_PREFIX
from remotelab.api.auth import Principal, Role
from remotelab.api.routes.live import event_stream
from remotelab.api.visibility import View
from remotelab.cli.app import app as cli
from remotelab.errors import PlanValidationError


@pytest.fixture(scope="module")
def own(tmp_path_factory, prefect_api) -> Iterator[Site]:
    yield from make_site(tmp_path_factory.mktemp("own"), prefect_api, visibility="own")


@dataclass
class Two:
    """An experiment of alice's and one of bob's, each with a stored run."""

    alices: str
    bobs: str
    alices_run: str
    bobs_run: str


@pytest.fixture(scope="module")
def two(own) -> Two:
    alices, bobs = own.submit("researcher"), own.submit("researcher2")
    return Two(
        alices,
        bobs,
        store_one_run(own.store, own.lab, alices, "alice"),
        store_one_run(own.store, own.lab, bobs, "bob"),
    )


def call(site, who, method, path, **kwargs):
    return site.client.request(method, API_PREFIX + path, headers=site.headers(who), **kwargs)


def get(site, who, path, **params):
    return call(site, who, "GET", path, params=params)


def same_404(hidden, missing, hidden_id: str, missing_id: str) -> bool:
    """Whether two answers are both 404 and say the same but for the id they name."""
    if hidden.status_code != 404 or missing.status_code != 404:
        return False
    expected = json.loads(missing.text.replace(missing_id, hidden_id))
    return hidden.json() == expected


def test_a_researcher_lists_and_reaches_only_their_own_experiments(own, two):
    base = f"/labs/{own.name}/experiments"

    def listed(who, **params):
        r = get(own, who, base, **params)
        assert r.status_code == 200, r.text
        page = r.json()
        return {e["id"] for e in page["items"]}, page["total"]

    alices, total = listed("researcher")
    assert two.alices in alices and two.bobs not in alices and total == len(alices)
    bobs, _ = listed("researcher2")
    assert two.bobs in bobs and two.alices not in bobs
    assert listed("researcher", submitter="bob") == (set(), 0)
    assert listed("observer") == (set(), 0)  # an observer submitted none
    assert {two.alices, two.bobs} <= listed("manager")[0] <= listed("admin")[0]

    absent = str(uuid.uuid4())
    for tail in ("", "/history", "/runs"):
        hidden = get(own, "researcher", f"{base}/{two.bobs}{tail}")
        missing = get(own, "researcher", f"{base}/{absent}{tail}")
        assert same_404(hidden, missing, two.bobs, absent), (tail, hidden.text, missing.text)
        assert get(own, "observer", f"{base}/{two.alices}{tail}").status_code == 404
        assert get(own, "manager", f"{base}/{two.bobs}{tail}").status_code == 200
        assert get(own, "researcher2", f"{base}/{two.bobs}{tail}").status_code == 200
    assert get(own, "researcher", f"{base}/{two.alices[:8]}").json()["id"] == two.alices
    assert get(own, "researcher", f"{base}/{two.bobs[:8]}").status_code == 404  # a prefix too
    events = f"/labs/{own.name}/events"
    assert get(own, "researcher", events, experiment=two.bobs).status_code == 404
    assert get(own, "researcher", events, experiment=two.bobs[:8]).status_code == 404


def test_changing_another_researchers_experiment_is_not_found_either(own, two):
    base = f"/labs/{own.name}/experiments/{two.bobs}"
    attempts = [
        ("POST", "/cancel", {}),
        ("PATCH", "", {"params": {"num": 2}}),
        ("POST", "/move", {"to": "back"}),
        ("POST", "/answer", {"value": 1}),
    ]
    for method, tail, body in attempts:
        r = call(own, "researcher", method, f"{base}{tail}", json=body)
        assert r.status_code == 404 and "no experiment" in r.json()["detail"], (tail, r.text)
    shown = get(own, "researcher2", base).json()
    assert shown["state"] == "queued" and shown["params"]["num"] == 1 and not shown["edits"]
    refused = own.auth.audit(actor="alice", target=two.bobs, lab=own.name)
    assert {(e.action, e.status) for e in refused} == {
        ("experiment.cancel", 404),
        ("experiment.edit", 404),
        ("experiment.move", 404),
        ("experiment.answer", 404),
    }


def test_her_experiments_history_names_no_other_users_experiment(own, two):
    hers = own.submit("researcher")
    base = f"/labs/{own.name}/experiments/{hers}"
    moved = call(own, "manager", "POST", f"{base}/move", json={"behind": two.bobs})
    assert moved.status_code == 200, moved.text
    reason = {"reason": f"clashes with {two.bobs}"}
    assert call(own, "manager", "POST", f"{base}/cancel", json=reason).status_code == 200
    seen = get(own, "researcher", f"{base}/history").json()
    details = {a["action"]: a["detail"] for a in seen["actions"]}
    assert details["experiment.move"] == {"behind": None}
    assert details["experiment.cancel"] == {"reason": "clashes with (hidden)"}
    assert "clashes with (hidden)" in seen["states"][-1]["message"]
    shown = get(own, "researcher", base).json()
    assert shown["state"] == "cancelled" and "clashes with (hidden)" in shown["message"]
    events = get(own, "researcher", f"/labs/{own.name}/events", experiment=hers, timeout=60)
    (ended,) = [data for kind, data in sse_items(events.text) if kind == "end"]
    assert ended["id"] == hers and "clashes with (hidden)" in ended["message"]
    for answer in (seen, shown, ended):
        assert two.bobs not in json.dumps(answer)
    assert two.bobs in json.dumps(get(own, "manager", f"{base}/history").json())


def test_another_researchers_runs_data_and_plots_are_not_found(own, two):
    def uids(who, **params):
        r = get(own, who, "/runs", **params)
        assert r.status_code == 200, r.text
        return {run["uid"] for run in r.json()}

    alices = uids("researcher")
    assert {two.alices_run, own.run_uid} <= alices and two.bobs_run not in alices
    bobs = uids("researcher2")
    assert two.bobs_run in bobs and two.alices_run not in bobs
    assert uids("researcher", submitter="bob") == set()
    assert uids("researcher", experiment=two.bobs) == set()
    assert uids("observer") == set()
    assert {two.alices_run, two.bobs_run} <= uids("manager")

    absent = str(uuid.uuid4())
    tails = ("", "/data", "/data?format=csv", "/data?format=hdf5", "/plot.png", "/verify")
    for tail in tails:
        hidden = call(own, "researcher", "GET", f"/runs/{two.bobs_run}{tail}")
        missing = call(own, "researcher", "GET", f"/runs/{absent}{tail}")
        assert same_404(hidden, missing, two.bobs_run, absent), (tail, hidden.text, missing.text)
        assert call(own, "researcher2", "GET", f"/runs/{two.bobs_run}{tail}").status_code == 200
    for tail in ("", "/data?format=csv"):
        assert call(own, "manager", "GET", f"/runs/{two.bobs_run}{tail}").status_code == 200
    prefix = two.bobs_run[:8]
    assert get(own, "researcher", f"/runs/{prefix}").status_code == 404
    assert get(own, "researcher2", f"/runs/{prefix}").json()["uid"] == two.bobs_run
    assert get(own, "researcher", f"/runs/{two.alices_run[:8]}").json()["uid"] == two.alices_run


# -- live ------------------------------------------------------------------------------------
def feed(site, run: str, experiment: str, user: str, reading: float) -> list[str]:
    """The documents of one short run of ``user``'s into the gateway's live hub; their uids."""
    hub = site.app.state.gateway.live
    desc, event, stop = (f"{run}-{kind}" for kind in ("desc", "event", "stop"))
    docs = [
        ("start", {"uid": run, "lab": site.name, "experiment_id": experiment, "submitter": user}),
        (
            "descriptor",
            {
                "uid": desc,
                "run_start": run,
                "name": "primary",
                "object_keys": {"thermometer": ["thermometer_temperature"]},
            },
        ),
        (
            "event",
            {
                "uid": event,
                "descriptor": desc,
                "seq_num": 1,
                "time": 1.6e9,
                "data": {"thermometer_temperature": reading},
            },
        ),
        ("stop", {"uid": stop, "run_start": run, "exit_status": "success"}),
    ]
    for name, doc in docs:
        hub.dispatch("document", name, doc)
    return [run, desc, event, stop]


def status_of_both(site, two) -> dict:
    """A worker's status while both run, bob's the latest, with alerts about each."""
    entry = {"state": "running", "plan_name": "measure", "progress": {"done": 1, "total": 3}}
    return {
        "lab": site.name,
        "state": "running",
        "experiment_id": two.bobs,
        "plan_name": "measure",
        "run_uid": "bobs-run",
        "progress": {"done": 2, "total": 3},
        "running": {
            two.alices: {**entry, "run_uid": "alices-run"},
            two.bobs: {**entry, "run_uid": "bobs-run"},
        },
        "alerts": [
            {
                "kind": "stalled",
                "message": f"experiment {two.bobs} stalled",
                "experiment": two.bobs,
            },
            {"kind": "lab held", "message": f"lab held: 3 failures (experiment {two.bobs})"},
        ],
    }


def sse_items(text: str) -> list[tuple[str, dict]]:
    items = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            items.append((lines["event"], json.loads(lines["data"])))
    return items


def test_a_researchers_live_feed_replays_only_their_runs(own, two):
    bobs = feed(own, f"b-{uuid.uuid4().hex}", two.bobs, "bob", 30.0)
    alices = feed(own, f"a-{uuid.uuid4().hex}", two.alices, "alice", 20.0)
    own.app.state.gateway.live.dispatch("status", "status", status_of_both(own, two))
    params = {"history": 120, "timeout": 0.3}
    path = f"/labs/{own.name}/events"
    seen = sse_items(get(own, "researcher", path, **params).text)
    docs = {d["doc"]["uid"] for kind, d in seen if kind == "document"}
    assert set(alices) <= docs and not docs & set(bobs)
    (status,) = [d for kind, d in seen if kind == "status" and d["running"]]
    assert list(status["running"]) == [two.alices] and status["experiment_id"] == two.alices
    assert status["run_uid"] == "alices-run" and status["state"] == "running"
    assert [a["message"] for a in status["alerts"]] == [
        "lab held: 3 failures (experiment (hidden))"
    ]
    assert two.bobs not in get(own, "researcher", path, **params).text
    managed = sse_items(get(own, "manager", path, **params).text)
    assert set(bobs) <= {d["doc"]["uid"] for kind, d in managed if kind == "document"}


def test_a_researchers_live_stream_carries_only_their_documents(own, two):
    gw = own.app.state.gateway
    svc = gw.labs[own.name]
    status = status_of_both(own, two)

    async def follow(user: str | None) -> tuple[str, list[str], list[str]]:
        """The stream of ``user`` (None: a manager's) while bob's run and then alice's go."""
        chunks: list[bytes] = []
        bobs: list[str] = []
        alices: list[str] = []
        stream = event_stream(gw, svc, None, heartbeat=0.01, timeout=30, user=user)
        async for chunk in stream:
            if not chunks:  # the stream listens now: its first keep-alive came
                bobs = feed(own, f"b-{uuid.uuid4().hex}", two.bobs, "bob", 31.0)
                gw.live.dispatch("status", "status", status)
                alices = feed(own, f"a-{uuid.uuid4().hex}", two.alices, "alice", 21.0)
            chunks.append(chunk)
            if alices and alices[-1].encode() in chunk:  # alice's stop: everything came
                break
        await stream.aclose()
        return b"".join(chunks).decode(), bobs, alices

    text, bobs, alices = asyncio.run(follow("alice"))
    assert all(uid in text for uid in alices)
    assert not any(uid in text for uid in bobs) and two.bobs not in text
    (seen,) = [d for kind, d in sse_items(text) if kind == "status"]
    assert list(seen["running"]) == [two.alices]
    text, bobs, alices = asyncio.run(follow(None))
    assert all(uid in text for uid in [*alices, *bobs]) and two.bobs in text


def test_a_devices_reading_from_another_researchers_run_is_not_shown(own, two):
    feed(own, f"a-{uuid.uuid4().hex}", two.alices, "alice", 22.0)
    feed(own, f"b-{uuid.uuid4().hex}", two.bobs, "bob", 33.0)  # the latest reading: bob's

    def reading(who):
        devices = {d["name"]: d for d in get(own, who, f"/labs/{own.name}/devices").json()}
        return devices["thermometer"]["reading"]

    assert reading("manager")["experiment"] == two.bobs
    assert reading("researcher2")["experiment"] == two.bobs
    alices = reading("researcher")  # her latest stored run's instead
    assert alices["stored"] is True and alices["experiment"] == two.alices


def test_what_runs_and_what_it_holds_is_shown_only_to_its_submitter(own, two):
    """bob's titration runs (no worker: its state set so): the lab's summary, devices and
    samples show it to bob and the managers; to alice the devices are busy, by no one named."""
    titration = own.queue.submit(
        "titration", {"sample_id": "T001"}, submitter="bob", role="manager"
    )
    own.queue.prefect.set_state(titration.id, Running(), force=True)
    summary = {who: get(own, who, f"/labs/{own.name}").json() for who in IDENTITIES}
    for who in ("manager", "admin", "researcher2"):
        assert [e["id"] for e in summary[who]["running"]] == [titration.id]
        assert summary[who]["current"]["id"] == titration.id
    for who in ("researcher", "observer"):
        assert summary[who]["running"] == [] and summary[who]["current"] is None
    assert {s["visibility"] for s in summary.values()} == {"own"}
    assert len({s["queued"] for s in summary.values()}) == 1  # the lab's count, for all
    listed = get(own, "researcher", "/labs").json()
    assert [lab["running"] for lab in listed if lab["name"] == own.name] == [[]]

    def devices(who):
        return {d["name"]: d for d in get(own, who, f"/labs/{own.name}/devices").json()}

    held = {n for n, d in devices("manager").items() if d["experiment"] == titration.id}
    assert held and held == {n for n, d in devices("researcher2").items() if d["experiment"]}
    alices = devices("researcher")
    assert all(alices[n]["busy"] for n in held) and not any(
        d["experiment"] for d in alices.values()
    )

    def t001(who):
        return {s["id"]: s for s in get(own, who, f"/labs/{own.name}/samples").json()}["T001"]

    assert t001("researcher2")["consumed_by"] == titration.id
    assert titration.id in t001("manager")["why_consumed"]
    seen = t001("researcher")
    assert seen["consumed"] and seen["consumed_by"] is None
    assert "(hidden)" in seen["why_consumed"] and titration.id not in seen["why_consumed"]


IDENTITIES = ("observer", "researcher", "researcher2", "manager", "admin")


def test_views_of_the_lab_hide_the_experiments_of_others(own, two):
    svc = own.app.state.gateway.labs[own.name]
    alice = View(svc, Principal("alice", Role.researcher))
    manager = View(svc, Principal("mia", Role.manager))
    view = {
        "reservations": {
            "heater": {
                "holder": two.bobs,
                "since": None,
                "block": False,
                "waiters": [{"experiment": two.bobs}, {"experiment": two.alices}],
            },
            "sample:S001": {"holder": two.alices, "waiters": []},
        },
        "waiting": {
            two.alices: f"waiting for heater, held by {two.bobs} since 10:00:00",
            two.bobs: "waiting for a free lane",
        },
        "running": [{"id": two.bobs, "submitter": "bob"}, {"id": "x", "submitter": "alice"}],
        "concurrency": 3,
    }
    seen = alice.reservations(view)
    assert seen["reservations"]["heater"]["holder"] is None
    assert seen["reservations"]["heater"]["waiters"] == [{"experiment": two.alices}]
    assert seen["reservations"]["sample:S001"]["holder"] == two.alices
    assert seen["waiting"] == {two.alices: "waiting for heater, held by (hidden) since 10:00:00"}
    assert seen["running"] == [{"id": "x", "submitter": "alice"}] and seen["concurrency"] == 3
    assert manager.reservations(view) == view
    samples = [
        {
            "id": "S001",
            "held_by": two.bobs,
            "consumed_by": two.bobs,
            "why_consumed": f"by experiment {two.bobs} (titrate, completed)",
        }
    ]
    (sample,) = alice.samples(samples)
    assert sample["held_by"] is None and sample["consumed_by"] is None
    assert sample["why_consumed"] == "by experiment (hidden) (titrate, completed)"
    assert manager.samples(samples) == samples
    # a text keeps ids that are no experiment's (her run's uid), hides another's experiment
    text = f"crashed; runs {two.alices_run} stored; after {two.bobs}; see {two.alices}"
    assert (
        alice.scrub(text)
        == f"crashed; runs {two.alices_run} stored; after (hidden); see {two.alices}"
    )
    with pytest.raises(PlanValidationError) as refused, alice.hiding():
        raise PlanValidationError(
            "titrate", [{"param": "sample_id", "message": f"used up: by experiment {two.bobs}"}]
        )
    assert refused.value.errors == [
        {"param": "sample_id", "message": "used up: by experiment (hidden)"}
    ]


def test_the_cli_through_the_gateway_shows_only_their_own(own, two):
    from remotelab.api.server import GatewayServer

    server = GatewayServer(own.app, port=free_port()).start()
    try:
        runner = CliRunner()
        at = ["--url", server.url, "--token", own.tokens["researcher"]]
        shown = runner.invoke(cli, ["show", two.bobs, *at])
        assert shown.exit_code != 0 and f"no experiment {two.bobs} in lab" in shown.output
        assert "Traceback" not in shown.output
        queue = runner.invoke(cli, ["queue", "--json", *at])
        assert queue.exit_code == 0, queue.output
        assert two.alices in queue.output and two.bobs not in queue.output
        runs = runner.invoke(cli, ["runs", "--json", *at])
        assert runs.exit_code == 0, runs.output
        assert two.alices_run in runs.output and two.bobs_run not in runs.output
        absent = str(uuid.uuid4())
        for command in ("export", "verify", "show"):
            hidden = runner.invoke(cli, [command, two.bobs_run, *at])
            missing = runner.invoke(cli, [command, absent, *at])
            assert hidden.exit_code == missing.exit_code == 2, hidden.output
            assert hidden.output == missing.output.replace(absent, two.bobs_run)
    finally:
        server.stop()


def test_a_lab_that_says_nothing_shows_everyone_everything(site):
    alices = site.submit("researcher")
    svc = site.app.state.gateway.labs[site.name]
    assert View(svc, Principal("bob", Role.researcher)).user is None
    shown = get(site, "researcher2", f"/labs/{site.name}/experiments/{alices}")
    assert shown.status_code == 200 and shown.json()["submitter"] == "alice"
    listed = get(site, "researcher2", f"/labs/{site.name}/experiments").json()["items"]
    assert alices in {e["id"] for e in listed}
    assert site.run_uid in {r["uid"] for r in get(site, "researcher2", "/runs").json()}
    assert get(site, "observer", f"/runs/{site.run_uid}/data").status_code == 200
    assert get(site, "observer", f"/labs/{site.name}").json()["visibility"] == "lab"
