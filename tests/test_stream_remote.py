"""The live stream: bluesky's own RemoteDispatcher receives a live run, in order, safely
(its CURVE keys from :func:`remotelab.stream.remote_dispatcher`)."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import threading

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.callbacks.zmq import Publisher, RemoteDispatcher
from bluesky.plans import count

from remotelab.data import attach
from remotelab.data.codec import DecodeError, encode
from remotelab.errors import StreamError
from remotelab.keys.curve import CLIENT, CurveKeys
from remotelab.lab import load_lab
from remotelab.stream import (
    DOC_PREFIX,
    STATUS_PREFIX,
    StreamProxy,
    StreamPublisher,
    Subscriber,
    client_curve,
    deserializer,
    remote_dispatcher,
)

LOOPBACK = "tcp://127.0.0.1:*"


@pytest.fixture
def lab():
    with load_lab(speed=2000) as the_lab:
        yield the_lab


@pytest.fixture
def proxy():
    p = StreamProxy(LOOPBACK, LOOPBACK).start()
    yield p
    p.stop()


class DispatcherThread:
    """Runs a RemoteDispatcher in a thread; collects documents until the stop document."""

    def __init__(self, dispatcher: RemoteDispatcher):
        self.dispatcher = dispatcher
        self.documents: list[tuple[str, dict]] = []
        self.stopped = threading.Event()
        dispatcher.subscribe(self._collect)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _collect(self, name, doc):
        self.documents.append((name, doc))
        if name == "stop":
            self.stopped.set()

    def _run(self):
        with contextlib.suppress(asyncio.CancelledError):
            self.dispatcher.start()

    def start(self):
        self.thread.start()
        return self

    def close(self):
        d = self.dispatcher
        d.loop.call_soon_threadsafe(lambda: d._task.cancel())
        self.thread.join(5)


def test_remote_dispatcher_receives_live_run_in_order(lab, proxy):
    RE = RunEngine({}, context_managers=[])
    emitted: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: emitted.append((name, doc)))
    publisher = StreamPublisher(proxy.in_address, heartbeat=0.05)
    RE.subscribe(publisher)
    publisher.wait_connected()
    remote = DispatcherThread(remote_dispatcher(proxy.out_address)).start()
    try:
        proxy.wait_for_subscribers(1, DOC_PREFIX + b" ")
        publisher.set_state("running", experiment_id="E-remote")  # status must not confuse it
        RE(count([lab["spectrometer"], lab["thermometer"]], num=6), experiment_id="E-remote")
        assert remote.stopped.wait(10), "the stop document never arrived"
    finally:
        remote.close()
        publisher.close()
    assert [n for n, _ in remote.documents] == [n for n, _ in emitted]
    assert [d.get("uid") for _, d in remote.documents] == [d.get("uid") for _, d in emitted]
    events = [d for n, d in remote.documents if n == "event"]
    assert [e["seq_num"] for e in events] == list(range(1, 7))
    sent = [d for n, d in emitted if n == "event"]
    for got, want in zip(events, sent, strict=True):
        spectrum = got["data"]["spectrometer_absorbance"]
        assert isinstance(spectrum, np.ndarray) and spectrum.shape == (201,)
        np.testing.assert_array_equal(spectrum, want["data"]["spectrometer_absorbance"])
    assert remote.documents[0][1]["experiment_id"] == "E-remote"


def test_status_messages_follow_the_run(lab, proxy):
    RE = RunEngine({}, context_managers=[])
    publisher = StreamPublisher(proxy.in_address, heartbeat=None, progress_rate=0)
    RE.subscribe(publisher)
    publisher.wait_connected()
    with Subscriber(proxy.out_address, documents=False) as sub:
        proxy.wait_for_subscribers(1, STATUS_PREFIX + b" ")
        RE(count([lab["thermometer"]], num=3), experiment_id="E-status")
        publisher.set_state("paused")
        statuses = []
        while (m := sub.receive(timeout=5)) is not None:
            assert m.kind == "status"
            statuses.append(m.doc)
            if m.doc["state"] == "paused":
                break
    publisher.close()
    states = [s["state"] for s in statuses]
    assert states[0] == "running" and statuses[0]["experiment_id"] == "E-status"
    assert max(s["progress"]["done"] for s in statuses) == 3
    assert statuses[0]["progress"]["total"] == 3
    assert "idle" in states and states[-1] == "paused"


def test_bluesky_publisher_through_proxy_with_safe_serializer(lab, proxy):
    """bluesky's own Publisher with remotelab's encoder is read by remotelab's Subscriber."""
    RE = RunEngine({}, context_managers=[])
    pub = Publisher(
        proxy.in_address,
        prefix=DOC_PREFIX,
        serializer=encode,
        curve_config=client_curve(proxy.in_address),
    )
    with Subscriber(proxy.out_address, status=False) as sub:
        proxy.wait_for_subscribers(1, DOC_PREFIX + b" ")
        # bluesky's Publisher cannot tell when it is connected: publish until one arrives
        probe = None
        for _ in range(200):
            pub("start", {"uid": "probe", "time": 0.0})
            probe = sub.receive(timeout=0.05)
            if probe is not None:
                break
        assert probe is not None and probe.doc["uid"] == "probe"
        while sub.receive(timeout=0.2) is not None:
            pass
        RE.subscribe(pub)
        (uid,) = RE(count([lab["thermometer"]], num=2))
        names = []
        while (m := sub.receive(timeout=5)) is not None:
            names.append(m.name)
            if m.name == "stop":
                assert m.doc["run_start"] == uid
                break
    pub.close()
    assert names == ["start", "descriptor", "event", "event", "stop"]


def test_deserializer_refuses_pickle_and_garbage():
    evil = pickle.dumps({"uid": "x"})
    with pytest.raises(DecodeError):
        deserializer(evil)
    with pytest.raises(DecodeError):
        deserializer(b"\xc1not msgpack")


def test_subscriber_drops_malformed_messages(proxy):
    import zmq

    ctx = zmq.Context()
    raw = ctx.socket(zmq.PUB)
    CurveKeys().keypair(CLIENT).client(raw, CurveKeys().proxy_key(proxy.in_address))
    raw.connect(proxy.in_address)
    with Subscriber(proxy.out_address) as sub:
        proxy.wait_for_subscribers(1, DOC_PREFIX + b" ")
        got = None
        for _ in range(200):
            raw.send(DOC_PREFIX + b" event " + pickle.dumps({"uid": "evil"}))
            raw.send(DOC_PREFIX + b" event " + encode({"uid": "good"}))
            got = sub.receive(timeout=0.05)
            if got is not None:
                break
        assert got is not None and got.doc == {"uid": "good"}
        assert sub.dropped >= 1
    raw.close()
    ctx.term()


def test_bad_prefixes_and_addresses_are_refused():
    with pytest.raises(StreamError):
        StreamPublisher("tcp://127.0.0.1:1", prefix=b"has space", heartbeat=None)
    with pytest.raises(StreamError):
        StreamPublisher("not-an-endpoint", heartbeat=None)
    with pytest.raises(StreamError):
        StreamProxy("tcp://127.0.0.1:*", "bogus://x")


def test_status_follows_the_run_engine_pause_and_resume(lab, proxy):
    from bluesky import plan_stubs as bps
    from bluesky.utils import RunEngineInterrupted

    RE = RunEngine({}, context_managers=[])
    publisher = StreamPublisher(proxy.in_address, heartbeat=None)
    attach(RE, publisher=publisher)  # documents, and the engine's state through state_hook
    publisher.wait_connected()

    def plan():
        yield from bps.open_run(md={"experiment_id": "E-pause"})
        yield from bps.checkpoint()
        yield from bps.pause()
        yield from bps.close_run()

    with Subscriber(proxy.out_address, documents=False) as sub:
        proxy.wait_for_subscribers(1, STATUS_PREFIX + b" ")
        with pytest.raises(RunEngineInterrupted):
            RE(plan())
        RE.resume()
        states = []
        while (m := sub.receive(timeout=5)) is not None:
            states.append((m.doc["state"], m.doc.get("engine_state")))
            if m.doc.get("engine_state") == "idle" and ("paused", "paused") in states:
                break
    publisher.close()
    assert ("paused", "paused") in states
    paused_at = states.index(("paused", "paused"))
    assert ("running", "running") in states[paused_at:]  # resumed
    assert states[-1] == ("idle", "idle")
