"""The demo's (``Embedded``'s) live stream: its proxy binds REMOTELAB_STREAM_IN/OUT when they
are set, and its worker's status reports a pause as it happens."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from api_helpers import free_port, write_lab

from remotelab import Client
from remotelab.cli.gateway import stream_lines
from remotelab.embedded import Embedded, stream_addresses
from remotelab.queue import ExperimentState
from remotelab.stream import Subscriber

#: long enough to pause it while it runs (it is aborted once paused)
LONG = {"detectors": ["thermometer"], "num": 10_000}


@pytest.fixture(scope="module")
def addresses() -> tuple[str, str]:
    return f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory, prefect_api, addresses) -> Iterator[Embedded]:
    tmp = tmp_path_factory.mktemp("demo-stream")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REMOTELAB_STREAM_IN", addresses[0])
        env.setenv("REMOTELAB_STREAM_OUT", addresses[1])
        site = Embedded(
            tmp, lab_file=write_lab(tmp), port=free_port(), speed=1000, api_url=prefect_api
        )
    with site:
        yield site


def test_stream_addresses_given_then_environment_then_free_ports(monkeypatch):
    monkeypatch.delenv("REMOTELAB_STREAM_IN", raising=False)
    monkeypatch.delenv("REMOTELAB_STREAM_OUT", raising=False)
    assert stream_addresses("127.0.0.1") == ("tcp://127.0.0.1:*", "tcp://127.0.0.1:*")
    monkeypatch.setenv("REMOTELAB_STREAM_OUT", "tcp://127.0.0.1:7001")
    assert stream_addresses("127.0.0.1") == ("tcp://127.0.0.1:*", "tcp://127.0.0.1:7001")
    given = stream_addresses("127.0.0.1", "ipc:///tmp/in", "ipc:///tmp/out")
    assert given == ("ipc:///tmp/in", "ipc:///tmp/out")


def test_the_demo_proxy_binds_and_prints_the_addresses_of_the_environment(demo, addresses):
    assert (demo.proxy.in_address, demo.proxy.out_address) == addresses
    printed = stream_lines(demo.proxy.in_address, demo.proxy.out_address)
    assert printed[0].split()[:3] == ["stream", "in:", addresses[0]]
    assert printed[1].split()[:3] == ["stream", "out:", addresses[1]]


def test_the_demo_stream_reports_a_pause(demo):
    with (
        Subscriber(demo.proxy.out_address, documents=False) as status,
        Client(demo.url, demo.tokens["demo-manager"]) as c,
    ):
        exp = c.submit("measure", LONG)
        seen: list[tuple[str, str | None]] = []

        def wait_for_status(state: str, within: float) -> None:
            deadline = time.monotonic() + within
            while (state, exp.id) not in seen:
                assert time.monotonic() < deadline, f"no {state} status on the stream: {seen[-5:]}"
                message = status.receive(timeout=1.0)
                if message is not None:
                    seen.append((message.doc["state"], message.doc.get("experiment_id")))

        # Prefect says running from the claim on; the worker's plan runs a moment later
        wait_for_status("running", 60)
        c.pause()
        wait_for_status("paused", 30)
        c.abort("enough")
        assert exp.wait(timeout=60).state == ExperimentState.cancelled
