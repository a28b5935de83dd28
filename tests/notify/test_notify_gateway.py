"""Subscriptions through a real gateway on a real Prefect server: the routes and their
rights, masking in answers and in the audit log, a bad URL refused with 422; the CLI's
``notify add|list|remove|test`` through the gateway and on this machine; and a failed
experiment on the simulated lab told to the subscriptions made through the gateway."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from notify_helpers import Webhook, free_port, write_lab
from typer.testing import CliRunner

from remotelab import Client
from remotelab.api import AuthStore, LabService, create_app
from remotelab.api.server import GatewayServer
from remotelab.cli import app
from remotelab.errors import ApiForbidden, ApiInvalid, ApiNotFound
from remotelab.lab import load_lab
from remotelab.queue import ExperimentQueue, ExperimentState
from remotelab.sim import Fault, inject_fault
from remotelab.worker import LabWorker

USERS = {"alice": "researcher", "bob": "researcher", "mia": "manager", "olga": "observer"}
SECRET = "hunter2sekrit"
runner = CliRunner()


@dataclass
class Gateway:
    url: str
    lab_file: Path
    name: str
    tokens: dict[str, str]
    auth: AuthStore
    hook: Webhook
    api: str

    def client(self, user: str) -> Client:
        return Client(self.url, self.tokens[user], lab=self.name)


@pytest.fixture(scope="module")
def gw(tmp_path_factory, prefect_api) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("notify-gateway")
    hook = Webhook()
    hook.thread.start()
    lab_file = write_lab(tmp, [{"url": hook.url("/lab"), "events": ["experiment_failed"]}])
    lab = load_lab(lab_file, connect=False)
    queue = ExperimentQueue(lab, api_url=prefect_api)
    queue.ensure()
    auth = AuthStore(tmp / "auth.sqlite")
    tokens = {}
    for user, role in USERS.items():
        auth.add_user(user, role)
        tokens[user] = auth.create_token(user, "tests").token
    server = GatewayServer(
        create_app(auth=auth, labs=[LabService(lab, queue)]), port=free_port()
    ).start()
    yield Gateway(server.url, lab_file, lab.name, tokens, auth, hook, prefect_api)
    server.stop()
    queue.close()
    auth.close()
    hook.shutdown()
    hook.server_close()


def test_subscriptions_through_the_routes(gw):
    alice, bob, mia, olga = (gw.client(u) for u in ("alice", "bob", "mia", "olga"))
    with alice, bob, mia, olga:
        secret = f"json://alice:{SECRET}@127.0.0.1:{gw.hook.port}/alice?-token={SECRET}"
        mine = alice.subscribe(secret, ["experiment_failed"])
        assert mine["owner"] == "alice" and mine["events"] == ["experiment_failed"]
        assert SECRET not in mine["url"] and "alice:****@" in mine["url"]
        assert "-token=****" in mine["url"]
        theirs = bob.subscribe(gw.hook.url("/bob"))
        assert len(theirs["events"]) == 7  # none named: every event
        assert [s["id"] for s in alice.subscriptions()] == [mine["id"]]
        seen = {s["id"]: s for s in mia.subscriptions()}
        assert {"lab-1", mine["id"], theirs["id"]} <= set(seen) and seen["lab-1"]["owner"] is None
        assert all(SECRET not in s["url"] for s in seen.values())

        with pytest.raises(ApiInvalid, match="apprise has no service 'nope'") as bad:
            alice.subscribe(f"nope://alice:{SECRET}@host")
        assert bad.value.status == 422
        with pytest.raises(ApiInvalid, match="unknown event 'lab_on_fire'"):
            alice.subscribe(gw.hook.url("/alice"), ["lab_on_fire"])
        with pytest.raises(ApiForbidden, match="researcher role"):
            olga.subscribe(gw.hook.url("/olga"))
        with pytest.raises(ApiNotFound):
            alice.unsubscribe(theirs["id"])
        with pytest.raises(ApiForbidden, match=r"is a target of lab .*file"):
            mia.unsubscribe("lab-1")

        (tested,) = alice.notify_test()
        assert tested["ok"] and tested["subscription"] == mine["id"]
        post = gw.hook.wait_for("/alice?token=" + SECRET, "a test notification")
        assert "asked for by alice" in post["message"]
        assert mia.unsubscribe(theirs["id"])["id"] == theirs["id"]
        assert theirs["id"] not in {s["id"] for s in mia.subscriptions()}
        assert alice.unsubscribe(mine["id"])["id"] == mine["id"]
        assert alice.subscriptions() == []

    records = gw.auth.audit(lab=gw.name)
    actions = {r.action for r in records}
    text = json.dumps([r.model_dump(mode="json") for r in records])
    assert {"notify.add", "notify.remove", "notify.test"} <= actions
    assert SECRET not in text and "nope://alice:****@host" in text


def test_the_cli_through_the_gateway(gw):
    side = ["--url", gw.url, "--token", gw.tokens["alice"], "--lab", gw.name]
    url = gw.hook.url(f"/cli?-token={SECRET}")
    added = runner.invoke(app, ["notify", "add", url, "-e", "experiment_failed", *side, "--json"])
    assert added.exit_code == 0, added.output
    sub = json.loads(added.output)
    listed = runner.invoke(app, ["notify", "list", *side], terminal_width=200)
    assert listed.exit_code == 0 and sub["id"] in listed.output and SECRET not in listed.output
    tested = runner.invoke(app, ["notify", "test", sub["id"], *side], terminal_width=200)
    assert tested.exit_code == 0 and "sent" in tested.output, tested.output
    gw.hook.wait_for(f"/cli?token={SECRET}", "a test notification")
    bad = runner.invoke(app, ["notify", "add", "nope://x", *side])
    assert bad.exit_code == 2 and "HTTP 422" in bad.output and "nope" in bad.output
    removed = runner.invoke(app, ["notify", "remove", sub["id"], *side])
    assert removed.exit_code == 0 and f"removed {sub['id']}" in removed.output
    empty = runner.invoke(app, ["notify", "list", *side])
    assert "no notification subscriptions" in empty.output


def test_the_cli_on_this_machine(gw):
    here = ["--local", "--lab", str(gw.lab_file), "--api", gw.api, "--by", "carol"]
    url = gw.hook.url("/carol")
    added = runner.invoke(app, ["notify", "add", url, *here, "--json"])
    assert added.exit_code == 0, added.output
    sub = json.loads(added.output)
    assert sub["owner"] == "carol"
    with gw.client("mia") as mia:  # stored in Prefect: the gateway sees it too
        assert sub["id"] in {s["id"] for s in mia.subscriptions()}
    listed = runner.invoke(app, ["notify", "list", *here], terminal_width=200)
    assert sub["id"] in listed.output and "lab-1" not in listed.output
    managers = runner.invoke(
        app, ["notify", "list", *here, "--role", "manager"], terminal_width=200
    )
    assert "lab-1" in managers.output and "(lab file)" in managers.output
    tested = runner.invoke(app, ["notify", "test", *here], terminal_width=200)
    assert tested.exit_code == 0 and "sent" in tested.output, tested.output
    gw.hook.wait_for("/carol", "asked for by carol")
    bad = runner.invoke(app, ["notify", "add", "mailto://", *here])
    assert bad.exit_code == 2 and "not a valid mailto:// URL" in bad.output
    removed = runner.invoke(app, ["notify", "remove", sub["id"], *here])
    assert removed.exit_code == 0, removed.output


def test_a_failed_experiment_reaches_subscriptions_made_through_the_gateway(gw, mailbox):
    """The gateway stores them in Prefect; a worker of the lab (another process, in a real
    lab another host) reads them there when it tells of the failure."""
    alice, bob = gw.client("alice"), gw.client("bob")
    with alice, bob:
        alice.subscribe(mailbox.url("alice@example.org"), ["experiment_failed"])
        bob.subscribe(mailbox.url("bob@example.org"), ["experiment_failed"])
        exp = alice.submit("measure", {"detectors": ["thermometer"], "num": 2})
        with load_lab(gw.lab_file, speed=1000) as lab:
            worker = LabWorker(lab, api_url=gw.api, poll_interval=60.0)
            with worker:
                inject_fault(lab["thermometer"], Fault.FAIL)
                done = worker.run_next()
                assert done is not None and done.id == exp.id
                assert done.state == ExperimentState.failed
                mailbox.wait_for("alice@example.org", f"experiment {exp.id[:8]} failed")
                gw.hook.wait_for("/lab", f"experiment {exp.id[:8]} failed")
                assert worker.notifier.flush(30)
        assert mailbox.to("bob@example.org") == []
        for sub in alice.subscriptions() + bob.subscriptions():
            (alice if sub["owner"] == "alice" else bob).unsubscribe(sub["id"])
