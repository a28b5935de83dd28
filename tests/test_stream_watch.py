"""``remotelab watch EXPERIMENT`` follows a live run from the stream and exits when it stops."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bluesky import RunEngine
from bluesky.plans import count

from remotelab.lab import load_lab
from remotelab.stream import DOC_PREFIX, STATUS_PREFIX, StreamProxy, StreamPublisher, Subscriber

SRC = Path(__file__).resolve().parents[1] / "src"


def _watch(address: str, experiment: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "remotelab", "watch", experiment, "--stream", address, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "160", "TERM": "dumb"},
    )


def _watch_runs(experiment: str, detectors: list[str], num: int, *extra: str):
    """``remotelab watch EXPERIMENT`` while a RunEngine publishes a run of another experiment,
    then ``count(detectors, num)`` of ``experiment``: (the watched run's uid, the process,
    its stdout, its stderr)."""
    proxy = StreamProxy("tcp://127.0.0.1:*", "tcp://127.0.0.1:*").start()
    publisher = StreamPublisher(proxy.in_address, heartbeat=None)
    proc = _watch(proxy.out_address, experiment, *extra)
    try:
        publisher.wait_connected()
        proxy.wait_for_subscribers(1, DOC_PREFIX + b" ", timeout=30)
        RE = RunEngine({}, context_managers=[])
        RE.subscribe(publisher)
        with load_lab(speed=2000) as lab:
            RE(count([lab["thermometer"]], num=2), experiment_id="another")  # not shown
            (uid,) = RE(count([lab[d] for d in detectors], num=num), experiment_id=experiment)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        publisher.close()
        proxy.stop()
    return uid, proc, out, err


def test_watch_shows_the_experiment_and_exits_at_stop():
    uid, proc, out, err = _watch_runs("E-watch", ["thermometer", "balance"], 5)
    assert proc.returncode == 0, err
    assert f"run {uid} success: 5 event(s)" in out
    assert "thermometer_temperature" in out and "balance_mass" in out
    assert "5/5" in out  # the progress bar, from num_points


def test_watch_gives_up_when_the_experiment_never_starts():
    proxy = StreamProxy("tcp://127.0.0.1:*", "tcp://127.0.0.1:*").start()
    try:
        proc = _watch(proxy.out_address, "E-never", "--timeout", "0.5")
        _, err = proc.communicate(timeout=60)
    finally:
        proxy.stop()
    assert proc.returncode == 2
    assert "did not start" in err


def test_watch_joins_a_run_already_under_way():
    """A watcher started mid-run learns the run from the worker's status heartbeat."""
    import asyncio
    import threading

    from bluesky import plan_stubs as bps
    from bluesky import preprocessors as bpp

    proxy = StreamProxy("tcp://127.0.0.1:*", "tcp://127.0.0.1:*").start()
    publisher = StreamPublisher(proxy.in_address, heartbeat=0.05)
    publisher.wait_connected()
    started, go_on = threading.Event(), threading.Event()
    RE = RunEngine({}, context_managers=[])
    RE.subscribe(publisher)
    RE.subscribe(lambda name, doc: started.set() if name == "event" else None)
    lab = load_lab(speed=2000)

    @bpp.run_decorator(md={"experiment_id": "E-late"})
    def plan():
        yield from bps.trigger_and_read([lab["thermometer"]])  # before anyone watches
        # hold the run open (heartbeats go on) until the watcher has been sent a status
        yield from bps.wait_for([lambda: asyncio.to_thread(go_on.wait, 60)])
        for _ in range(5):
            yield from bps.trigger_and_read([lab["thermometer"]])

    uids = []
    runner = threading.Thread(target=lambda: uids.extend(RE(plan())))
    runner.start()
    proc = None
    try:
        assert started.wait(30)
        proc = _watch(proxy.out_address, "E-late")
        # the watcher subscribes to documents, then status: once the proxy counts its status
        # subscription, every status the proxy forwards reaches the watcher too
        proxy.wait_for_subscribers(1, STATUS_PREFIX + b" ", timeout=30)
        with Subscriber(proxy.out_address, documents=False) as probe:
            proxy.wait_for_subscribers(2, STATUS_PREFIX + b" ", timeout=30)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                message = probe.receive(timeout=1)
                if message is not None and message.doc.get("run_uid"):
                    break
            else:
                raise AssertionError("no status naming the run reached a subscriber")
        go_on.set()
        runner.join(60)
        out, err = proc.communicate(timeout=60)
    finally:
        go_on.set()
        runner.join(60)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        publisher.close()
        proxy.stop()
        lab.close()
    assert proc.returncode == 0, err
    (uid,) = uids
    # the 5 events after joining, found through the status's descriptors; not the one before
    assert f"run {uid} success: 5 event(s)" in out


def test_watch_json_prints_one_line_per_document_of_the_experiment():
    """``watch --json`` on this machine prints what it prints through a gateway: one JSON line
    per document of the experiment's run, then ``end``."""
    import json

    uid, proc, out, err = _watch_runs("E-json", ["thermometer"], 3, "--json")
    assert proc.returncode == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    docs = [x["data"] for x in lines if x["event"] == "document"]
    assert [d["name"] for d in docs] == ["start", "descriptor", *["event"] * 3, "stop"]
    assert docs[0]["doc"]["uid"] == uid and docs[0]["doc"]["experiment_id"] == "E-json"
    assert lines[-1] == {
        "event": "end",
        "data": {"id": "E-json", "run_uid": uid, "exit_status": "success"},
    }


def test_watch_ends_when_the_queue_says_the_experiment_ended_and_its_stop_never_comes(
    monkeypatch, capsys
):
    """A worker that died after its start document: the watch ends on the queue's word."""
    import json
    import threading

    import pytest
    import typer

    from remotelab.cli import data

    monkeypatch.setattr(data, "STOP_GRACE", 0.0)
    proxy = StreamProxy("tcp://127.0.0.1:*", "tcp://127.0.0.1:*").start()
    publisher = StreamPublisher(proxy.in_address, heartbeat=None)
    started = threading.Event()

    def worker_starts_then_dies() -> None:
        publisher.wait_connected()
        proxy.wait_for_subscribers(1, DOC_PREFIX + b" ", timeout=30)
        start = {"uid": "run-dead", "time": time.time(), "experiment_id": "E-dead", "scan_id": 1}
        publisher("start", start)
        started.set()

    def ended() -> str | None:  # the queue's view: crashed once the run had started
        return "crashed" if started.is_set() else None

    thread = threading.Thread(target=worker_starts_then_dies)
    thread.start()
    try:
        with pytest.raises(typer.Exit) as stopped:
            data.watch(
                "E-dead", stream=proxy.out_address, timeout=60, rows=None, as_json=True, ended=ended
            )
    finally:
        thread.join()
        publisher.close()
        proxy.stop()
    assert stopped.value.exit_code == 1
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[0]["data"]["name"] == "start"
    assert lines[-1] == {"event": "end", "data": {"id": "E-dead", "state": "crashed"}}
