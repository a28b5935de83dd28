"""The CurveZMQ keys: made on first use readable by their owner only (and made so again if
someone opened them up), an allowlist that decides who may command, publish and watch, clients
that trust only allowed servers, and ``remotelab keys`` to list, make, allow and revoke them."""

from __future__ import annotations

import json
import logging
import stat

import pytest
import zmq
from typer.testing import CliRunner
from zmq.utils.monitor import recv_monitor_message

from remotelab.cli import app
from remotelab.errors import StreamError, WorkerUnavailable
from remotelab.keys.curve import CLIENT, PROXY, CurveKeys, Keypair
from remotelab.queue import commands, control
from remotelab.stream import StreamProxy, StreamPublisher, Subscriber

LOOPBACK = "tcp://127.0.0.1:*"
EVENTS = {getattr(zmq, n): n for n in dir(zmq) if n.startswith("EVENT_")}


@pytest.fixture
def keys(tmp_path, monkeypatch) -> CurveKeys:
    """A fresh keys directory of this test, as every remotelab part here sees it."""
    monkeypatch.setenv("REMOTELAB_KEYS_DIR", str(tmp_path / "keys"))
    return CurveKeys()


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def handshake(keypair: Keypair, server_key: bytes, kind: int, endpoint: str) -> bool:
    """Whether a CURVE client ``keypair`` gets through the handshake with ``endpoint``."""
    sock = zmq.Context.instance().socket(kind)
    sock.linger = 0
    keypair.client(sock, server_key)
    monitor = sock.get_monitor_socket()
    try:
        sock.connect(endpoint)
        while monitor.poll(30_000):
            name = EVENTS.get(recv_monitor_message(monitor)["event"], "")
            if "HANDSHAKE" in name:
                return name == "EVENT_HANDSHAKE_SUCCEEDED"
        raise AssertionError(f"no handshake with {endpoint}")
    finally:
        sock.disable_monitor()
        monitor.close()
        sock.close()


def test_keys_are_made_on_first_use_private_and_allowed(keys):
    with StreamProxy(LOOPBACK, LOOPBACK) as proxy, Subscriber(proxy.out_address):
        pass
    assert mode(keys.root) == 0o700 and mode(keys.root / "allowed") == 0o700
    for name in (PROXY, CLIENT):
        for path in (keys.secret_path(name), keys.public_path(name)):
            assert mode(path) == 0o600, path
        assert keys.allows(keys.keypair(name).public)
    secret = keys.secret_path(CLIENT).read_text()
    assert "secret-key" in secret and "secret-key" not in keys.public_path(CLIENT).read_text()
    assert zmq.auth.load_certificate(keys.secret_path(CLIENT))[1] is not None  # zmq's format


def test_a_secret_key_readable_by_others_is_made_private_again(keys, caplog):
    first = keys.keypair("worker-sim")
    keys.secret_path("worker-sim").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="remotelab.keys.curve"):
        assert CurveKeys().keypair("worker-sim") == first
    assert mode(keys.secret_path("worker-sim")) == 0o600
    assert "could be read by others" in caplog.text


def test_watchers_may_read_the_stream_only_and_revoked_keys_get_nothing(keys):
    watcher = keys.new("watcher", watch=True)
    peer = Keypair("peer", *zmq.curve_keypair())
    with StreamProxy(LOOPBACK, LOOPBACK) as proxy:
        server = keys.keypair(PROXY).public
        assert handshake(watcher, server, zmq.SUB, proxy.out_address)
        assert not handshake(watcher, server, zmq.XPUB, proxy.in_address)
        assert not handshake(peer, server, zmq.SUB, proxy.out_address)
        keys.allow("peer", peer.public)
        assert handshake(peer, server, zmq.XPUB, proxy.in_address)
        assert keys.revoke("peer") and not keys.revoke("peer")
        assert not handshake(peer, server, zmq.XPUB, proxy.in_address)
    worker = control.ControlServer(lambda c: commands.Reply.done(), name="worker-sim").start()
    try:
        assert control.request(worker.address, commands.Status()).ok
        assert not handshake(watcher, worker.keypair.public, zmq.REQ, worker.endpoint)
    finally:
        worker.close()


def test_clients_trust_only_servers_whose_key_is_allowed(keys):
    rogue = control.ControlServer(lambda c: commands.Reply.done(), name="rogue").start()
    try:
        keys.revoke("rogue")  # a server of someone else: its key is not in our allowlist
        with pytest.raises(WorkerUnavailable, match="not allowed here"):
            control.request(rogue.address, commands.Abort())
        assert control.request_many([rogue.address], commands.Wake()) == {}
        unannounced = control.ControlAddress(rogue.endpoint, "")
        with pytest.raises(WorkerUnavailable, match="no control key"):
            control.request(unannounced, commands.Status())
    finally:
        rogue.close()
    with pytest.raises(StreamError, match="remotelab keys allow"):
        Subscriber("tcp://stream.lab.example:5578")  # no proxy key known for another host
    with pytest.raises(StreamError, match="stream-proxy"):
        StreamPublisher("tcp://stream.lab.example:5577", heartbeat=None)


def test_remotelab_keys_lists_makes_allows_and_revokes(keys, tmp_path):
    runner = CliRunner()
    made = runner.invoke(app, ["keys", "new", "bench-pc", "--watch"])
    assert made.exit_code == 0, made.output
    public = keys.keypair("bench-pc").public.decode()
    assert public in made.output
    again = runner.invoke(app, ["keys", "new", "bench-pc"])
    assert again.exit_code == 2 and "--replace" in again.output
    other = CurveKeys(tmp_path / "other-host")  # a worker's keys on another machine
    theirs = other.keypair("worker-far")
    by_file = runner.invoke(app, ["keys", "allow", str(other.public_path("worker-far"))])
    assert by_file.exit_code == 0, by_file.output
    by_key = runner.invoke(app, ["keys", "allow", zmq.curve_keypair()[0].decode(), "--name", "gw"])
    assert by_key.exit_code == 0, by_key.output
    bad = runner.invoke(app, ["keys", "allow", "not-a-key", "--name", "x"])
    assert bad.exit_code == 2
    listed = json.loads(runner.invoke(app, ["keys", "list", "--json"]).output)
    rows = {row["name"]: row for row in listed["keys"]}
    assert rows["bench-pc"]["own"] and rows["bench-pc"]["access"] == "watch"
    assert rows["worker-far"] == {
        **rows["worker-far"],
        "public": theirs.public.decode(),
        "own": False,
        "access": "all",
    }
    assert all(row["private"] for row in rows.values())
    assert public in runner.invoke(app, ["keys", "list"]).output
    assert runner.invoke(app, ["keys", "revoke", "worker-far"]).exit_code == 0
    assert not keys.allows(theirs.public)
    assert runner.invoke(app, ["keys", "revoke", "worker-far"]).exit_code == 2
    rotated = runner.invoke(app, ["keys", "new", "bench-pc", "--replace", "--watch"])
    assert rotated.exit_code == 0 and not keys.allows(public.encode(), watch=True)
