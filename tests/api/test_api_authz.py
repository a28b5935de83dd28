"""The authorization matrix: every route × every role (and no, a revoked, a wrong token).

Each cell names the status the caller must get. Targets are made fresh for every call, so a
cell never depends on what another cell did; a test also checks that the matrix covers
every route the gateway has.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fastapi.routing import APIRoute

from remotelab.api import API_PREFIX
from remotelab.api.routes import router

IDENTITIES = ("observer", "researcher", "researcher2", "manager", "admin")
BAD = ("none", "revoked", "wrong")
MEASURE = {"plan": "measure", "params": {"detectors": ["thermometer"], "num": 1}}


@dataclass
class Case:
    """One route: how to call it, and the status each identity gets."""

    name: str
    method: str
    path: str  # with {lab}, {exp}, {uid}, {user}, {token} placeholders
    expect: dict[str, int]
    body: dict | None = None
    target: Callable | None = None  # site, identity -> dict of placeholders
    template: str = ""  # the route's path template, for the coverage check


def everyone(status: int) -> dict[str, int]:
    return dict.fromkeys(IDENTITIES, status)


def at_least(role: str, ok: int, denied: int = 403) -> dict[str, int]:
    order = ["observer", "researcher", "manager", "admin"]
    rank = {"researcher2": 1, **{r: i for i, r in enumerate(order)}}
    return {i: ok if rank[i] >= order.index(role) else denied for i in IDENTITIES}


def alices(site, who):
    return {"exp": site.submit("researcher")}


def awaiting(site, who):
    return {
        "exp": site.submit(
            "researcher",
            "scan",
            detectors=["thermometer"],
            motor="stirrer",
            start=0,
            stop=100,
            num=2,
        )
    }


def finished(site, who):
    exp = site.submit("researcher")
    site.queue.cancel(exp, by="tests")
    return {"exp": exp}


def fresh_user(site, who):
    name = f"u{uuid.uuid4().hex[:8]}"
    site.auth.add_user(name, "observer")
    return {"user": name}


def someone_elses_token(site, who):
    name = f"u{uuid.uuid4().hex[:8]}"
    site.auth.add_user(name, "observer")
    return {"token": site.auth.create_token(name).id}


def alices_subscription(site, who):
    sub = site.queue.subscriptions.add(
        f"json://127.0.0.1:9/{uuid.uuid4().hex[:8]}", [], user="alice", role="researcher"
    )
    return {"sub": sub.id}


def new_user_body(site, who):
    return {"name": f"n{uuid.uuid4().hex[:8]}", "role": "observer"}


CASES = [
    Case("whoami", "GET", "/whoami", everyone(200)),
    Case("labs", "GET", "/labs", everyone(200)),
    Case("lab", "GET", "/labs/{lab}", everyone(200)),
    Case("devices", "GET", "/labs/{lab}/devices", everyone(200)),
    Case("plans", "GET", "/labs/{lab}/plans", everyone(200)),
    Case(
        "plan",
        "GET",
        "/labs/{lab}/plans/measure",
        everyone(200),
        template="/labs/{lab}/plans/{plan}",
    ),
    Case("list", "GET", "/labs/{lab}/experiments", everyone(200)),
    Case("submit", "POST", "/labs/{lab}/experiments", at_least("researcher", 201), MEASURE),
    Case("show", "GET", "/labs/{lab}/experiments/{exp}", everyone(200), target=alices),
    Case("exp runs", "GET", "/labs/{lab}/experiments/{exp}/runs", everyone(200), target=alices),
    Case(
        "exp history", "GET", "/labs/{lab}/experiments/{exp}/history", everyone(200), target=alices
    ),
    Case(
        "cancel own",
        "POST",
        "/labs/{lab}/experiments/{exp}/cancel",
        {**at_least("manager", 200), "researcher": 200},
        {},
        alices,
    ),
    Case(
        "cancel finished",
        "POST",
        "/labs/{lab}/experiments/{exp}/cancel",
        {**at_least("manager", 409), "researcher": 409},
        {},
        finished,
    ),
    Case(
        "edit own",
        "PATCH",
        "/labs/{lab}/experiments/{exp}",
        {**at_least("manager", 200), "researcher": 200},
        {"params": {"num": 2}},
        alices,
    ),
    Case(
        "edit bad params",
        "PATCH",
        "/labs/{lab}/experiments/{exp}",
        {**at_least("manager", 422), "researcher": 422},
        {"params": {"num": 0}},
        alices,
    ),
    Case(
        "edit finished",
        "PATCH",
        "/labs/{lab}/experiments/{exp}",
        {**at_least("manager", 409), "researcher": 409},
        {"params": {"num": 2}},
        finished,
    ),
    Case(
        "edit awaiting approval",
        "PATCH",
        "/labs/{lab}/experiments/{exp}",
        {**at_least("manager", 200), "researcher": 200},
        {"params": {"num": 3}},
        awaiting,
    ),
    Case(
        "defer own",
        "POST",
        "/labs/{lab}/experiments/{exp}/move",
        {**at_least("manager", 200), "researcher": 200},
        {"to": "back"},
        alices,
    ),
    Case(
        "move to front",
        "POST",
        "/labs/{lab}/experiments/{exp}/move",
        at_least("manager", 200),
        {"to": "front"},
        alices,
    ),
    Case(
        "prioritise",
        "POST",
        "/labs/{lab}/experiments/{exp}/priority",
        at_least("manager", 200),
        {"priority": "low"},
        alices,
    ),
    Case(
        "approve",
        "POST",
        "/labs/{lab}/experiments/{exp}/approve",
        at_least("manager", 200),
        None,
        awaiting,
    ),
    Case(
        "reject",
        "POST",
        "/labs/{lab}/experiments/{exp}/reject",
        at_least("manager", 200),
        {"reason": "not today"},
        awaiting,
    ),
    Case(
        "answer",
        "POST",
        "/labs/{lab}/experiments/{exp}/answer",
        {**at_least("manager", 409), "researcher": 409},
        {"value": True},
        alices,
    ),
    Case(
        "events",
        "GET",
        "/labs/{lab}/events?experiment={exp}",
        everyone(200),
        target=finished,
        template="/labs/{lab}/events",
    ),
    Case("hold", "POST", "/labs/{lab}/hold", at_least("manager", 200)),
    Case("release", "POST", "/labs/{lab}/release", at_least("manager", 200)),
    Case("pause", "POST", "/labs/{lab}/pause", at_least("manager", 409), {}),
    Case("resume", "POST", "/labs/{lab}/resume", at_least("manager", 409)),
    Case("stop", "POST", "/labs/{lab}/stop", at_least("manager", 409)),
    Case("abort", "POST", "/labs/{lab}/abort", at_least("manager", 409), {"reason": "t"}),
    Case("reservations", "GET", "/labs/{lab}/reservations", everyone(200)),
    Case("samples", "GET", "/labs/{lab}/samples", everyone(200)),
    Case("notify list", "GET", "/labs/{lab}/notify", everyone(200)),
    Case(
        "notify add",
        "POST",
        "/labs/{lab}/notify",
        at_least("researcher", 201),
        {"url": "json://127.0.0.1:9/authz", "events": ["experiment_failed"]},
    ),
    Case(
        "notify remove",
        "DELETE",
        "/labs/{lab}/notify/{sub}",
        {"observer": 404, "researcher": 200, "researcher2": 404, "manager": 200, "admin": 200},
        target=alices_subscription,
        template="/labs/{lab}/notify/{subscription_id}",
    ),
    Case("notify test", "POST", "/labs/{lab}/notify/test", everyone(200), {}),
    *(
        Case(
            f"{action} one",
            "POST",
            f"/labs/{{lab}}/experiments/{{exp}}/{action}",
            at_least("manager", 409),  # a queued experiment does not run
            {},
            alices,
        )
        for action in ("pause", "resume", "stop", "abort")
    ),
    Case("runs", "GET", "/runs", everyone(200)),
    Case("run", "GET", "/runs/{uid}", everyone(200)),
    Case(
        "run data", "GET", "/runs/{uid}/data?format=csv", everyone(200), template="/runs/{uid}/data"
    ),
    Case("run plot", "GET", "/runs/{uid}/plot.png", everyone(200)),
    Case("run verify", "GET", "/runs/{uid}/verify", everyone(200)),
    Case("audit", "GET", "/audit", at_least("manager", 200)),
    Case("audit head", "GET", "/audit/head", at_least("manager", 200)),
    Case("audit verify", "GET", "/audit/verify", at_least("manager", 200)),
    Case("users", "GET", "/users", at_least("admin", 200)),
    Case("add user", "POST", "/users", at_least("admin", 201), new_user_body),  # type: ignore[arg-type]
    Case(
        "update user",
        "PATCH",
        "/users/{user}",
        at_least("admin", 200),
        {"role": "researcher"},
        fresh_user,
    ),
    Case("tokens", "GET", "/tokens", everyone(200)),
    Case("create token", "POST", "/users/{user}/tokens", at_least("admin", 201), {}, fresh_user),
    Case(
        "revoke token",
        "DELETE",
        "/tokens/{token}",
        at_least("admin", 200),
        target=someone_elses_token,
        template="/tokens/{token_id}",
    ),
]


def call(site, case: Case, who: str):
    values = {"lab": site.name, "uid": site.run_uid}
    if case.target is not None:
        values.update(case.target(site, who))
    body = case.body(site, who) if callable(case.body) else case.body
    url = API_PREFIX + case.path.format(**values)
    kwargs = {"headers": site.headers(who)}
    if body is not None:
        kwargs["json"] = body
    return site.client.request(case.method, url, **kwargs)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matrix(site, case):
    got = {}
    for who in (*IDENTITIES, *BAD):
        response = call(site, case, who)
        got[who] = response.status_code
        assert "application/json" in response.headers["content-type"] or response.status_code < 300
    expected = {**case.expect, **dict.fromkeys(BAD, 401)}
    assert got == expected


def test_matrix_covers_every_route(site):
    # the API's own router: the app's route list need not hold the included routes
    routes = {(m, r.path) for r in router.routes if isinstance(r, APIRoute) for m in r.methods}
    assert len(routes) > 40, "no routes found: the matrix would check nothing"
    covered = set()
    for c in CASES:
        template = c.template or c.path.replace("{exp}", "{experiment_id}").replace(
            "{user}", "{name}"
        )
        covered.add((c.method, template))
    assert routes - covered == set()


def test_denials_and_changes_are_audited_with_their_outcome(site):
    exp = site.submit("researcher")
    url = f"{API_PREFIX}/labs/{site.name}/experiments/{exp}/cancel"
    assert site.client.post(url, json={}, headers=site.headers("researcher2")).status_code == 403
    assert (
        site.client.post(
            url, json={"reason": "mine"}, headers=site.headers("researcher")
        ).status_code
        == 200
    )
    entries = site.auth.audit(action="experiment.cancel", lab=site.name, limit=1000)
    mine = [e for e in entries if e.target == exp]
    assert [(e.actor, e.status) for e in mine] == [("alice", 200), ("bob", 403)]
    assert mine[0].client == "testclient"
    assert mine[0].detail == {"reason": "mine"}
    assert "someone else's" in mine[1].detail["error"]


def test_401_answers_say_why_and_ask_for_a_bearer_token(site):
    url = f"{API_PREFIX}/labs"
    cases = {
        "none": "no API token",
        "revoked": "was revoked",
        "wrong": "unknown API token",
    }
    for who, text in cases.items():
        r = site.client.get(url, headers=site.headers(who))
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert text in r.json()["detail"]
    r = site.client.get(url, headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert r.status_code == 401


def test_lab_access_is_limited_to_a_users_labs(site):
    name = f"l{uuid.uuid4().hex[:6]}"
    site.auth.add_user(name, "manager", labs=["some-other-lab"])
    headers = {"Authorization": f"Bearer {site.auth.create_token(name).token}"}
    assert site.client.get(f"{API_PREFIX}/labs", headers=headers).json() == []
    r = site.client.post(f"{API_PREFIX}/labs/{site.name}/hold", headers=headers)
    assert r.status_code == 403 and "no access to lab" in r.json()["detail"]
    # the run store's runs of that lab are hidden too
    assert site.client.get(f"{API_PREFIX}/runs", headers=headers).json() == []


def test_prioritise_puts_it_behind_that_prioritys_last(site):
    first, second, third = (site.submit("researcher") for _ in range(3))
    url = f"{API_PREFIX}/labs/{site.name}/experiments"
    manager = site.headers("manager")
    r = site.client.post(f"{url}/{third}/priority", json={"priority": "urgent"}, headers=manager)
    assert r.status_code == 200 and r.json()["priority"] == "urgent"
    r = site.client.post(f"{url}/{first}/priority", json={"priority": "urgent"}, headers=manager)
    assert r.json()["priority"] == "urgent"
    queued = site.client.get(url, params={"state": "queued", "limit": 1000}, headers=manager)
    order = [e["id"] for e in queued.json()["items"]]
    mine = [i for i in order if i in (first, second, third)]
    assert mine == [third, first, second]
    r = site.client.post(f"{url}/{second}/priority", json={"priority": "soon"}, headers=manager)
    assert r.status_code == 422 and r.json()["errors"][0]["param"] == "priority"
    site.queue.cancel(second, by="tests")
    r = site.client.post(f"{url}/{second}/priority", json={"priority": "low"}, headers=manager)
    assert r.status_code == 409 and "only queued ones" in r.json()["detail"]
