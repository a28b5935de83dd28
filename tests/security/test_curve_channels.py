"""The control channel and the stream are CurveZMQ: a socket without an allowed key gets
nothing and changes nothing, tried the way an intruder on the lab host would, on a whole
installation (Prefect, stream proxy, worker, gateway, as ``remotelab demo``):

- a zmq REQ socket on the control address the worker announces in Prefect sends
  ``{"cmd": "abort"}`` while an experiment runs: no answer, the experiment runs on and
  completes;
- zmq sockets on the stream proxy's input publish a forged status and documents: no SSE
  client of the gateway sees them (a real run's documents, sent after, arrive);
- a zmq SUB socket on the proxy's output gets nothing while a run streams.

Each attempt waits for its handshake's outcome (a socket monitor event), not for time.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
import zmq
from zmq.utils.monitor import recv_monitor_message

from remotelab import Client
from remotelab.data.codec import encode
from remotelab.embedded import Embedded
from remotelab.keys.curve import CurveKeys, Keypair
from remotelab.lab import shipped_lab_text
from remotelab.queue import ExperimentState
from remotelab.queue.server import free_port
from remotelab.stream import DOC_PREFIX, STATUS_PREFIX

EVENTS = {getattr(zmq, n): n for n in dir(zmq) if n.startswith("EVENT_")}


def write_lab(directory: Path) -> Path:
    data = yaml.safe_load(shipped_lab_text("sim"))
    data["name"] = f"t{uuid.uuid4().hex[:8]}"
    data["plans"] = {"modules": ["curve_test_plans"]}
    path = directory / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory, prefect_api) -> Iterator[Embedded]:
    tmp = tmp_path_factory.mktemp("curve-site")
    with Embedded(
        tmp, lab_file=write_lab(tmp), port=free_port(), speed=1000, api_url=prefect_api
    ) as installed:
        yield installed


@pytest.fixture
def client(site) -> Iterator[Client]:
    with Client(site.url, site.tokens["demo-manager"]) as c:
        yield c


def intruder(kind: int, keypair: Keypair | None = None, server_key: bytes = b"") -> zmq.Socket:
    """A socket of a process that is not remotelab's: plain, or CURVE with a key of its own."""
    sock = zmq.Context.instance().socket(kind)
    sock.linger = 0
    if keypair is not None:
        keypair.client(sock, server_key)
    return sock


def unknown_key() -> Keypair:
    public, secret = zmq.curve_keypair()
    return Keypair("intruder", public, secret)


def handshake(sock: zmq.Socket, endpoint: str, timeout: float = 30.0) -> str:
    """Connect ``sock`` to ``endpoint``; the outcome of its first handshake (an event name)."""
    monitor = sock.get_monitor_socket()
    try:
        sock.connect(endpoint)
        while monitor.poll(int(timeout * 1000)):
            name = EVENTS.get(recv_monitor_message(monitor)["event"], "")
            if "HANDSHAKE" in name:
                return name
        raise AssertionError(f"no handshake with {endpoint} within {timeout} s")
    finally:
        sock.disable_monitor()
        monitor.close()


class Listener:
    """A dashboard: the gateway's SSE stream of the lab, read on a thread."""

    def __init__(self, client: Client, lab: str):
        self.events: queue.Queue = queue.Queue()
        self.seen: list = []
        self._thread = threading.Thread(target=self._read, args=(client, lab), daemon=True)
        self._thread.start()

    def _read(self, client: Client, lab: str) -> None:
        with contextlib.suppress(Exception):  # the client closed at the test's end
            for event in client.events(lab=lab, timeout=300):
                self.events.put(event)

    def until(self, test, timeout: float = 120.0):
        """Read events until ``test(event)``; that event."""
        while True:
            event = self.events.get(timeout=timeout)
            self.seen.append(event)
            if test(event):
                return event


def test_an_unauthenticated_abort_reaches_no_worker(site, client):
    exp = client.submit("ask_then_read", {})
    site.queue.wait_for(exp.id, [ExperimentState.paused])  # awaiting the operator: it runs
    (announced,) = site.queue.workers(fresh=True)  # its Prefect variable, as anyone reads it
    endpoint, server_key = announced["control"], announced["control_key"].encode()
    abort = json.dumps({"cmd": "abort", "reason": "intruder"}).encode()
    for sock in (
        intruder(zmq.REQ),
        intruder(zmq.REQ, unknown_key(), server_key),  # knows the worker's public key
    ):
        assert handshake(sock, endpoint).startswith("EVENT_HANDSHAKE_FAILED")
        with contextlib.suppress(zmq.Again):  # not even queued: no connection
            sock.send(abort, zmq.NOBLOCK)
        assert not sock.poll(1000), "the worker answered an unauthenticated socket"
        sock.close()
    now = site.queue.get(exp.id)
    assert now.state == ExperimentState.paused and now.state_name == "AwaitingOperator"
    client.answer(exp.id, "loaded")  # the gateway's own channel still works
    assert exp.wait(timeout=120).state == ExperimentState.completed


def test_forged_stream_input_never_reaches_a_dashboard_and_the_output_serves_no_one(site, client):
    lab, proxy = site.lab.name, site.proxy
    dashboard = Listener(client, lab)
    dashboard.until(lambda e: e.kind == "status")  # the dashboard hears the worker
    proxy_key = CurveKeys().proxy_key(proxy.in_address)
    forgers = [
        intruder(zmq.PUB),
        intruder(zmq.XPUB),  # how remotelab's publisher connects
        intruder(zmq.XPUB, unknown_key(), proxy_key),
    ]
    for sock in forgers:
        assert handshake(sock, proxy.in_address).startswith("EVENT_HANDSHAKE_FAILED")
    eavesdroppers = [intruder(zmq.SUB), intruder(zmq.SUB, unknown_key(), proxy_key)]
    for sock in eavesdroppers:
        sock.subscribe(b"")
        assert handshake(sock, proxy.out_address).startswith("EVENT_HANDSHAKE_FAILED")
    forged_status = {"lab": lab, "worker": "intruder", "state": "paused", "running": {}}
    forged_start = {"uid": "forged-run", "time": 0.0, "experiment_id": "FORGED", "lab": lab}
    forged_stop = {"uid": "forged-stop", "run_start": "forged-run", "exit_status": "success"}
    for sock in forgers:
        sock.send(STATUS_PREFIX + b" status " + encode({**forged_status, "experiment_id": "x"}))
        sock.send(DOC_PREFIX + b" start " + encode(forged_start))
        sock.send(DOC_PREFIX + b" stop " + encode(forged_stop))

    real = client.submit("measure", {"detectors": ["thermometer"], "num": 2})
    run = dashboard.until(
        lambda e: (
            e.kind == "document"
            and e.data["name"] == "start"
            and e.data["doc"].get("experiment_id") == real.id
        )
    ).data["doc"]["uid"]
    dashboard.until(
        lambda e: (
            e.kind == "document"
            and e.data["name"] == "stop"
            and e.data["doc"].get("run_start") == run
        )
    )
    relayed = json.dumps([e.data for e in dashboard.seen], default=str)
    assert "intruder" not in relayed and "forged" not in relayed and "FORGED" not in relayed
    for sock in eavesdroppers:
        assert not sock.poll(0), "the proxy served live data to an unauthenticated socket"
    for sock in forgers + eavesdroppers:
        sock.close()
