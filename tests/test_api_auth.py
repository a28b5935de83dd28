"""Users, roles, tokens and the audit log of the gateway (no server needed)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from remotelab.api.auth import AuthStore, Role, hash_token
from remotelab.errors import (
    AccountError,
    AccountExistsError,
    AuthenticationError,
    PermissionDeniedError,
    UnknownAccountError,
)

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def store(tmp_path):
    with AuthStore(tmp_path / "auth.sqlite") as s:
        yield s


def test_roles_are_ordered():
    assert Role.admin.at_least(Role.manager)
    assert Role.manager.at_least("researcher")
    assert Role.researcher.at_least(Role.observer)
    assert not Role.observer.at_least(Role.researcher)
    assert not Role.manager.at_least(Role.admin)


def test_token_is_shown_once_and_stored_as_hash(store, tmp_path):
    store.add_user("alice", "researcher")
    new = store.create_token("alice", "laptop")
    assert new.token.startswith(f"rl_{new.id}_")
    # the database holds the hash, never the token itself
    raw = (tmp_path / "auth.sqlite").read_bytes()
    assert new.token.encode() not in raw
    with sqlite3.connect(tmp_path / "auth.sqlite") as conn:
        (stored,) = conn.execute("SELECT hash FROM tokens WHERE id=?", (new.id,)).fetchone()
    assert stored == hash_token(new.token)
    listed = store.tokens("alice")
    assert [t.id for t in listed] == [new.id]
    assert "token" not in listed[0].model_dump()
    who = store.authenticate(new.token)
    assert (who.user, who.role, who.token_id) == ("alice", Role.researcher, new.id)
    assert store.token(new.id).last_used is not None


def test_tokens_are_unique_and_random(store):
    store.add_user("alice", "observer")
    tokens = {store.create_token("alice").token for _ in range(20)}
    assert len(tokens) == 20


@pytest.mark.parametrize(
    "token, message",
    [
        (None, "no API token"),
        ("", "no API token"),
        ("hunter2", "malformed"),
        ("rl_0123456789ab_" + "x" * 43, "unknown API token"),
    ],
)
def test_bad_tokens_are_refused(store, token, message):
    with pytest.raises(AuthenticationError, match=message):
        store.authenticate(token)


def test_revoked_token_and_disabled_user_are_refused(store):
    store.add_user("alice", "manager")
    a, b = store.create_token("alice"), store.create_token("alice")
    store.revoke_token(a.id)
    with pytest.raises(AuthenticationError, match="revoked"):
        store.authenticate(a.token)
    assert store.authenticate(b.token).user == "alice"  # the other token still works
    store.set_disabled("alice")
    with pytest.raises(AuthenticationError, match="disabled"):
        store.authenticate(b.token)
    store.set_disabled("alice", False)
    assert store.authenticate(b.token).role == Role.manager


def test_user_errors_say_what_was_wrong(store):
    store.add_user("alice", "observer")
    with pytest.raises(AccountExistsError, match="exists already"):
        store.add_user("alice", "observer")
    with pytest.raises(AccountError, match="unknown role 'boss'"):
        store.add_user("bob", "boss")
    with pytest.raises(AccountError, match="bad user name"):
        store.add_user("no spaces please", "observer")
    with pytest.raises(UnknownAccountError, match="no user 'carol'"):
        store.create_token("carol")
    with pytest.raises(UnknownAccountError, match="no token"):
        store.revoke_token("000000000000")


def test_principal_checks_role_and_lab(store):
    store.add_user("mia", "manager", labs=["lab1"])
    who = store.authenticate(store.create_token("mia").token)
    who.require(Role.manager, "lab1")
    with pytest.raises(PermissionDeniedError, match="no access to lab 'lab2'"):
        who.require(Role.observer, "lab2")
    with pytest.raises(PermissionDeniedError, match="needs the admin role"):
        who.require(Role.admin)
    store.add_user("root", "admin", labs=["lab1"])
    root = store.authenticate(store.create_token("root").token)
    root.require(Role.manager, "lab2")  # admins reach every lab


def test_audit_log_is_append_only_and_filterable(store, tmp_path):
    store.record(
        actor="alice",
        role="researcher",
        action="experiment.submit",
        status=201,
        target="e1",
        lab="lab1",
        client="10.0.0.1",
        detail={"plan": "measure"},
    )
    store.record(actor="mia", role="manager", action="lab.hold", status=200, lab="lab2")
    store.record(actor="bob", role="admin", action="user.add", status=409, target="x")
    entries = store.audit()
    assert [e.action for e in entries] == ["user.add", "lab.hold", "experiment.submit"]
    first = entries[-1]
    assert (first.actor, first.client, first.detail) == ("alice", "10.0.0.1", {"plan": "measure"})
    assert [e.actor for e in store.audit(labs=("lab1",))] == ["bob", "alice"]
    assert [e.actor for e in store.audit(actor="mia")] == ["mia"]
    with sqlite3.connect(tmp_path / "auth.sqlite") as conn:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE audit SET actor='nobody'")
    assert len(store.audit()) == 3


def _cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC), "REMOTELAB_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "remotelab", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_users_and_tokens(tmp_path):
    assert _cli("users", "add", "alice", "--role", "researcher", data_dir=tmp_path).returncode == 0
    made = _cli("tokens", "create", "alice", "-d", "laptop", data_dir=tmp_path)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    with AuthStore(tmp_path / "auth.sqlite") as store:
        who = store.authenticate(token)
        assert (who.user, who.role) == ("alice", Role.researcher)
        token_id = who.token_id
    assert _cli("tokens", "revoke", token_id, data_dir=tmp_path).returncode == 0
    dup = _cli("users", "add", "alice", "--role", "observer", data_dir=tmp_path)
    assert dup.returncode == 2 and "exists already" in dup.stderr
    with AuthStore(tmp_path / "auth.sqlite") as store:
        with pytest.raises(AuthenticationError, match="revoked"):
            store.authenticate(token)
        actions = [e.action for e in store.audit()]
    assert actions == ["token.revoke", "token.create", "user.add"]


def test_users_list_finds_the_demos_users_and_creates_no_database(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from remotelab.cli import app
    from remotelab.embedded import DEMO_USERS, fresh_demo_tokens

    monkeypatch.setenv("REMOTELAB_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    missing = runner.invoke(app, ["users", "list"])
    assert missing.exit_code == 2 and "no user database at" in missing.output
    assert not (tmp_path / "auth.sqlite").exists()  # nothing made as a side effect
    (tmp_path / "demo").mkdir()
    with AuthStore(tmp_path / "demo" / "auth.sqlite") as demo:  # as `remotelab demo` keeps it
        fresh_demo_tokens(demo)
    listed = runner.invoke(app, ["users", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert set(DEMO_USERS) <= {u["name"] for u in json.loads(listed.stdout)}
    assert not (tmp_path / "auth.sqlite").exists()


def test_a_demo_restart_revokes_the_tokens_of_the_demo_before(tmp_path):
    from remotelab.embedded import fresh_demo_tokens

    with AuthStore(tmp_path / "auth.sqlite") as store:
        first = fresh_demo_tokens(store)
        again = fresh_demo_tokens(store)
        for user, token in first.items():
            with pytest.raises(AuthenticationError, match="revoked"):
                store.authenticate(token)
            assert store.authenticate(again[user]).user == user
        other = store.create_token("demo-manager", "my script").token  # not the demo's own
        fresh_demo_tokens(store)
        assert store.authenticate(other).user == "demo-manager"
