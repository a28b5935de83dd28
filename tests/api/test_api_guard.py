"""Sessions end when tokens do, and guessing is slowed: a revoked token's live stream ends; an
address that keeps failing to authenticate is answered 429 with Retry-After, logged once a
minute; a token's first use from a new address is logged."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient

from remotelab.api.guard import FailedLogins, Guard
from remotelab.api.routes import live as live_routes


def test_failures_are_counted_per_address_over_a_window():
    failures = FailedLogins(3, window=60.0)
    assert [failures.failed("a", now=t) for t in (0.0, 1.0, 2.0)] == [1, 0, 0]
    assert failures.retry_after("a", now=2.0) == 58.0  # until the first failure is a minute old
    assert failures.retry_after("b", now=2.0) == 0.0  # another address is not slowed
    assert failures.retry_after("a", now=60.5) == 0.0  # the first one has left the window
    assert failures.failed("a", now=61.0) == 3  # the row counts the ones not logged before


def from_address(site, address: str) -> TestClient:
    return TestClient(site.app, client=(address, 40000))


def test_an_address_that_keeps_failing_gets_429_and_one_audit_row(site, monkeypatch):
    monkeypatch.setattr(site.app.state.gateway, "guard", Guard(site.auth, limit=10))
    guesser = from_address(site, "203.0.113.7")
    wrong = {"Authorization": "Bearer rl_0123456789ab_" + "x" * 43}
    answers = [guesser.get("/api/v1/labs", headers=wrong).status_code for _ in range(12)]
    assert answers[:10] == [401] * 10 and answers[10:] == [429, 429]
    slowed = guesser.get("/api/v1/labs", headers=site.headers("admin"))  # even a good token
    assert slowed.status_code == 429 and int(slowed.headers["Retry-After"]) >= 1
    assert slowed.json()["type"] == "TooManyAttemptsError"
    rows = [e for e in site.auth.audit(action="auth.failed") if e.client == "203.0.113.7"]
    assert len(rows) == 1 and rows[0].status == 401
    # another address is not slowed
    assert (
        from_address(site, "203.0.113.8")
        .get("/api/v1/labs", headers=site.headers("admin"))
        .status_code
        == 200
    )


def test_a_token_used_from_a_new_address_is_logged_once(site):
    token = site.auth.create_token("olga", "travels")
    headers = {"Authorization": f"Bearer {token.token}"}
    for address in ("198.51.100.1", "198.51.100.1", "198.51.100.2"):
        assert from_address(site, address).get("/api/v1/labs", headers=headers).status_code == 200
    rows = [e for e in site.auth.audit(action="token.new_address") if e.target == token.id]
    assert sorted(e.client for e in rows) == ["198.51.100.1", "198.51.100.2"]


def test_revoking_a_token_ends_its_open_live_stream(site, monkeypatch):
    monkeypatch.setattr(live_routes, "TOKEN_CHECK", 0.1)  # the gateway checks every 5 s
    token = site.auth.create_token("olga", "watching")
    headers = {"Authorization": f"Bearer {token.token}"}
    events: list[str] = []
    opened = threading.Event()

    def watch() -> None:
        with site.client.stream(
            "GET", f"/api/v1/labs/{site.name}/events", params={"heartbeat": 0.1}, headers=headers
        ) as stream:
            for line in stream.iter_lines():
                opened.set()
                if line.startswith("event: "):
                    events.append(line.removeprefix("event: "))

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    assert opened.wait(30), "the stream did not open"
    site.auth.revoke_token(token.id)
    reader.join(30)
    assert not reader.is_alive(), "the stream went on after its token was revoked"
    assert events[-1:] == ["revoked"]
