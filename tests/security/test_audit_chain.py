"""The audit log shows tampering: rows changed, deleted or reordered with the append-only
triggers dropped (as someone with the database file in hand would) are found by
``audit verify``, through the store, the gateway and the CLI; an entry's detail is bounded."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from remotelab.api.audit_chain import MAX_DETAIL_CHARS, MAX_DETAIL_DEPTH
from remotelab.api.auth import AuthStore
from remotelab.cli import app


def _store(tmp_path: Path, rows: int = 5) -> AuthStore:
    store = AuthStore(tmp_path / "auth.sqlite")
    for i in range(rows):
        store.record(
            actor="mia", role="manager", action="experiment.cancel", status=200,
            target=f"e{i}", lab="lab", detail={"reason": f"because {i}"},
        )  # fmt: skip
    return store


def _tamper(path: Path, *sql: str) -> None:
    """Change the database as an intruder would: the triggers dropped first."""
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("DROP TRIGGER audit_no_delete")
        for statement in sql:
            conn.execute(statement)


def test_an_untouched_log_verifies_and_its_head_is_the_newest_row(tmp_path):
    store = _store(tmp_path)
    report = store.verify_audit()
    newest = store.audit(limit=1)[0]
    assert report.ok and report.rows == 5 and report.first_bad is None
    assert report.head == store.audit_head() == newest.hash and len(newest.hash) == 64
    assert store.verify_audit(expect_head=store.audit(limit=3)[2].hash).head_found is True


@pytest.mark.parametrize(
    ("sql", "first_bad", "words"),
    [
        (['UPDATE audit SET detail=\'{"reason": "forged"}\' WHERE seq=3'], 3, "changed"),
        (["UPDATE audit SET actor='root' WHERE seq=2"], 2, "changed"),
        (["DELETE FROM audit WHERE seq=3"], 4, "3 before row 4 were deleted"),
        (["DELETE FROM audit WHERE seq IN (2, 3)"], 4, "2–3 before row 4"),
        (["DELETE FROM audit WHERE seq=1"], 2, "rows before row 2 were deleted"),
        # rows 2 and 3 swapped whole (each keeps its own hash): the links break
        (
            [
                "UPDATE audit SET seq=-2 WHERE seq=2",
                "UPDATE audit SET seq=2 WHERE seq=3",
                "UPDATE audit SET seq=3 WHERE seq=-2",
            ],
            2,
            "changed",
        ),
        (["UPDATE audit SET hash='' WHERE seq=4"], 4, "lost its hash"),
    ],
)
def test_tampering_is_found_at_the_first_row_it_touched(tmp_path, sql, first_bad, words):
    store = _store(tmp_path)
    _tamper(store.path, *sql)
    report = store.verify_audit()
    assert not report.ok
    assert report.first_bad == first_bad and words in report.problem


def test_a_reordered_log_with_rehashed_rows_is_out_of_order(tmp_path):
    from remotelab.api.audit_chain import row_hash

    store = _store(tmp_path)
    # swap rows 2 and 3, recomputing each one's own hash over its new seq but keeping links
    with sqlite3.connect(store.path) as conn:
        rows = {r[0]: r for r in conn.execute("SELECT * FROM audit ORDER BY seq")}
    columns = ["seq", "time", "actor", "role", "action", "target", "lab", "client", "status"]
    swapped = []
    for seq, other in ((2, 3), (3, 2)):
        content = dict(zip([*columns, "detail"], rows[other][:10], strict=True)) | {"seq": seq}
        prev = rows[other][10]
        swapped.append((seq, content, prev, row_hash(prev, content)))
    _tamper(store.path, "DELETE FROM audit WHERE seq IN (2, 3)")
    with sqlite3.connect(store.path) as conn:
        for _, content, prev, own in swapped:
            conn.execute(
                "INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (*content.values(), prev, own),
            )
    report = store.verify_audit()
    assert not report.ok and report.first_bad == 2 and "out of order" in report.problem


def test_deleting_the_newest_rows_is_seen_against_a_recorded_head(tmp_path):
    store = _store(tmp_path)
    recorded = store.audit_head()  # e.g. written into a run's provenance
    _tamper(store.path, "DELETE FROM audit WHERE seq=5")
    report = store.verify_audit(expect_head=recorded)
    assert report.ok and report.head_found is False


def test_a_log_from_before_the_chain_keeps_its_rows_and_chains_new_ones(tmp_path):
    path = tmp_path / "auth.sqlite"
    with sqlite3.connect(path) as conn:  # the table as remotelab created it before
        conn.execute(
            "CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, "
            "actor TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL "
            "DEFAULT '', lab TEXT NOT NULL DEFAULT '', client TEXT NOT NULL DEFAULT '', status "
            "INTEGER NOT NULL, detail TEXT NOT NULL DEFAULT '{}')"
        )
        conn.execute("INSERT INTO audit (time, actor, role, action, status) VALUES (1, 'a', "
                     "'admin', 'user.add', 200)")  # fmt: skip
    store = AuthStore(path)
    store.record(actor="mia", role="manager", action="lab.hold", status=200)
    report = store.verify_audit()
    assert report.ok and report.rows == 2 and report.unchained == 1 and report.head


def test_an_entry_detail_is_bounded_and_the_log_stays_readable(tmp_path):
    store = _store(tmp_path, rows=0)
    deep: dict = {}
    node = deep
    for _ in range(900):
        node["x"] = {}
        node = node["x"]
    store.record(actor="a", role="researcher", action="experiment.submit", status=422,
                 detail={"params": deep})  # fmt: skip
    store.record(actor="a", role="researcher", action="experiment.submit", status=413,
                 detail={"params": {"blob": "y" * 5_000_000}})  # fmt: skip
    store.record(actor="a", role="researcher", action="experiment.submit", status=422,
                 detail={"value": float("nan")})  # fmt: skip
    entries = store.audit()
    assert len(entries) == 3 and store.verify_audit().ok
    for entry in entries:
        assert len(json.dumps(entry.detail)) <= MAX_DETAIL_CHARS + 100
    big, deep_entry = entries[1], entries[2]
    assert big.detail["truncated"] is True and big.detail["size"] > 5_000_000
    text = json.dumps(deep_entry.detail)
    assert text.count('"x"') == MAX_DETAIL_DEPTH - 1 and "nested too deep" in text
    assert entries[0].detail == {"value": "nan"}


def test_cli_audit_verify_on_the_gateway_machine(tmp_path, monkeypatch):
    monkeypatch.delenv("REMOTELAB_URL", raising=False)
    monkeypatch.setenv("REMOTELAB_CONFIG", str(tmp_path / "none.toml"))
    store = _store(tmp_path)
    db = ["--db", str(store.path)]
    listed = CliRunner().invoke(app, ["audit", *db, "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output)["head"] == store.audit_head()
    good = CliRunner().invoke(app, ["audit", "verify", *db])
    assert good.exit_code == 0 and "intact: 5 rows" in good.output
    _tamper(store.path, "UPDATE audit SET target='other' WHERE seq=2")
    bad = CliRunner().invoke(app, ["audit", "verify", *db])
    assert bad.exit_code == 1 and "TAMPERED" in bad.output and "row 2 was changed" in bad.output
