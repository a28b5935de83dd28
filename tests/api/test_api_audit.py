"""The audit chain through the gateway: a manager reads its head and verifies it; a row
changed behind the gateway's back is named; a submission records the head it was accepted
under."""

from __future__ import annotations

import asyncio
import sqlite3


def test_gateway_verifies_the_chain_and_names_a_changed_row(site):
    as_manager = site.headers("manager")
    site.client.post(f"/api/v1/labs/{site.name}/hold", headers=as_manager)
    site.client.post(f"/api/v1/labs/{site.name}/release", headers=as_manager)
    head = site.client.get("/api/v1/audit/head", headers=as_manager).json()["head"]
    report = site.client.get("/api/v1/audit/verify", headers=as_manager).json()
    assert report["ok"] is True and report["head"] == head
    checked = site.client.get(f"/api/v1/audit/verify?head={head}", headers=as_manager).json()
    assert checked["head_found"] is True
    bad_head = site.client.get("/api/v1/audit/verify?head=nothex", headers=as_manager)
    assert bad_head.status_code == 422
    # the newest entries carry their hash
    (newest,) = site.client.get("/api/v1/audit?limit=1", headers=as_manager).json()
    assert newest["hash"] == head


def test_a_submission_records_the_head_it_was_accepted_under(site):
    site.client.get("/api/v1/whoami", headers=site.headers("researcher"))  # address known
    before = site.auth.audit_head()
    response = site.client.post(
        f"/api/v1/labs/{site.name}/experiments",
        json={"plan": "measure", "params": {"detectors": ["thermometer"], "num": 1}},
        headers=site.headers("researcher"),
    )
    assert response.status_code == 201, response.text
    assert response.json()["audit_head"] == before
    assert site.auth.audit_head() != before  # its own row came after


def test_tampering_behind_the_gateway_is_reported(site, tmp_path):
    as_manager = site.headers("manager")
    site.client.post(f"/api/v1/labs/{site.name}/hold", headers=as_manager)
    site.client.post(f"/api/v1/labs/{site.name}/release", headers=as_manager)
    seq = site.auth.audit(limit=2)[1].seq
    with sqlite3.connect(site.auth.path) as conn:
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute(f"UPDATE audit SET status=500 WHERE seq={seq}")
    report = site.client.get("/api/v1/audit/verify", headers=as_manager).json()
    assert report["ok"] is False and report["first_bad"] == seq
    assert f"row {seq} was changed" in report["problem"]
    assert site.client.get("/api/v1/audit", headers=as_manager).status_code == 200


def test_data_exports_are_in_the_audit_log(site):
    as_observer = site.headers("observer")
    got = site.client.get(f"/api/v1/runs/{site.run_uid[:8]}/data?format=csv", headers=as_observer)
    assert got.status_code == 200
    (row,) = site.auth.audit(action="run.export", actor="olga", limit=1)
    assert row.target == site.run_uid and row.lab == site.name and row.status == 200
    assert row.detail["format"] == "csv" and row.detail["stream"] == "primary"


def test_error_answers_do_not_say_where_the_gateway_keeps_its_files(site):
    missing = site.client.get("/api/v1/runs/ffff0000", headers=site.headers("admin"))
    assert missing.status_code == 404
    body = missing.text
    assert str(site.store.path) not in body and str(site.store.path.parent) not in body
    assert "<server path>" in body or "no run" in body


def test_a_request_is_in_the_audit_log_before_its_answer_leaves(site):
    """A client that has its answer finds its request in the audit log: the row is written
    before the answer is sent, not after it (so rows keep the order requests were handled)."""
    seen: list[int] = []
    token = site.tokens["manager"]

    def holds() -> int:
        return len(site.auth.audit(action="lab.hold", lab=site.name, limit=1000))

    before = holds()

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            seen.append(holds() - before)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/api/v1/labs/{site.name}/hold",
        "raw_path": f"/api/v1/labs/{site.name}/hold".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {token}".encode()), (b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    asyncio.run(site.app(scope, receive, send))
    site.client.post(f"/api/v1/labs/{site.name}/release", headers=site.headers("manager"))
    assert seen == [1]
