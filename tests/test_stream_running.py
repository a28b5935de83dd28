"""``status["running"]``: every experiment running at once, each followed from its own run's
documents (interleaved with the other runs'), and each paused by its own RunEngine."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky import plan_stubs as bps
from bluesky.utils import RunEngineInterrupted

from remotelab.cli import render
from remotelab.client import Event
from remotelab.data import attach
from remotelab.lab import load_lab
from remotelab.stream import STATUS_PREFIX, StreamProxy, StreamPublisher, Subscriber

LOOPBACK = "tcp://127.0.0.1:*"


@pytest.fixture
def publisher():
    # nothing listens there: zmq drops the messages, the status is followed all the same
    p = StreamPublisher("tcp://127.0.0.1:1", heartbeat=None, lab="sim", progress_rate=0)
    yield p
    p.close()


class Run:
    """The documents of one run, made by hand (uids say whose they are)."""

    def __init__(self, experiment: str, plan: str, points: int | None):
        self.uid = f"run-{experiment}"
        self.experiment, self.plan, self.points = experiment, plan, points
        self.descriptors: list[str] = []
        self.seq = 0

    def start(self) -> tuple[str, dict[str, Any]]:
        doc: dict[str, Any] = {
            "uid": self.uid,
            "time": 0.0,
            "plan_name": self.plan,
            "experiment_id": self.experiment,
        }
        if self.points is not None:
            doc["num_points"] = self.points
        return "start", doc

    def descriptor(self, stream: str = "primary") -> tuple[str, dict[str, Any]]:
        uid = f"{self.uid}-{stream}"
        self.descriptors.append(uid)
        return "descriptor", {"uid": uid, "run_start": self.uid, "name": stream, "time": 0.0}

    def event(self, stream: int = 0) -> tuple[str, dict[str, Any]]:
        self.seq += 1
        return "event", {
            "uid": f"{self.uid}-e{self.seq}",
            "descriptor": self.descriptors[stream],
            "seq_num": self.seq,
            "data": {},
            "timestamps": {},
            "time": 0.0,
        }

    def event_page(self, n: int) -> tuple[str, dict[str, Any]]:
        seq = list(range(self.seq + 1, self.seq + n + 1))
        self.seq += n
        return "event_page", {
            "descriptor": self.descriptors[0],
            "seq_num": seq,
            "uid": [f"{self.uid}-p{i}" for i in seq],
            "data": {},
        }

    def stop(self, exit_status: str = "success") -> tuple[str, dict[str, Any]]:
        return "stop", {
            "uid": f"{self.uid}-stop",
            "run_start": self.uid,
            "exit_status": exit_status,
            "time": 0.0,
        }


def feed(publisher: StreamPublisher, *documents: tuple[str, dict[str, Any]]) -> None:
    for name, doc in documents:
        publisher(name, doc)


def progress(publisher: StreamPublisher) -> dict[str, tuple[int, int | None]]:
    return {
        k: (v["progress"]["done"], v["progress"]["total"])
        for k, v in publisher.status["running"].items()
    }


def test_two_interleaved_runs_each_count_their_own_events(publisher):
    a, b = Run("E-a", "scan", 3), Run("E-b", "measure", None)
    assert publisher.status["running"] == {} and publisher.status["state"] == "idle"
    feed(publisher, a.start(), a.descriptor())
    feed(publisher, b.start(), a.event(), b.descriptor(), b.descriptor("baseline"))
    feed(publisher, b.event(), b.event(1), a.event(), b.event_page(4))
    s = publisher.status
    assert set(s["running"]) == {"E-a", "E-b"} and s["state"] == "running"
    assert progress(publisher) == {"E-a": (2, 3), "E-b": (5, None)}  # not the baseline's
    entry = s["running"]["E-a"]
    assert entry["plan_name"] == "scan" and entry["run_uid"] == a.uid
    assert entry["state"] == "running"
    # the top level is the latest run's
    assert (s["experiment_id"], s["run_uid"], s["progress"]) == (
        "E-b",
        b.uid,
        {"done": 5, "total": None},
    )
    assert s["descriptors"] == b.descriptors

    # the latest run stops: its entry goes, the top level shows the one still going
    feed(publisher, b.stop())
    assert set(s["running"]) == {"E-a"} and s["state"] == "running"
    assert (s["experiment_id"], s["plan_name"], s["run_uid"]) == ("E-a", "scan", a.uid)
    assert s["progress"] == {"done": 2, "total": 3} and s["descriptors"] == a.descriptors
    feed(publisher, b.event(), a.event())  # a stopped run's stray event counts nowhere
    assert progress(publisher) == {"E-a": (3, 3)}
    feed(publisher, a.stop("abort"))
    assert s["running"] == {} and s["state"] == "idle" and s["run_uid"] is None
    assert s["exit_status"] == "abort"


def test_documents_of_an_unknown_run_change_nothing(publisher):
    a = Run("E-a", "scan", 2)
    feed(publisher, a.start(), a.descriptor(), a.event())
    stray = {"uid": "x", "descriptor": "not-a-descriptor", "seq_num": 1}
    feed(publisher, ("event", stray), ("stop", {"uid": "y", "run_start": "other"}))
    assert progress(publisher) == {"E-a": (1, 2)} and publisher.status["state"] == "running"


def test_each_experiment_pauses_on_its_own(publisher):
    a, b = Run("E-a", "scan", 3), Run("E-b", "measure", 2)
    publisher.on_engine_state("running", "idle", experiment="E-a")
    feed(publisher, a.start(), a.descriptor())
    publisher.on_engine_state("running", "idle", experiment="E-b")
    feed(publisher, b.start(), b.descriptor())

    def running():
        return {k: (v["state"], v["engine_state"]) for k, v in publisher.status["running"].items()}

    publisher.on_engine_state("paused", "running", experiment="E-a")
    assert running() == {"E-a": ("paused", "paused"), "E-b": ("running", "running")}
    assert publisher.status["state"] == "running"  # one still runs
    publisher.on_engine_state("suspending", "running", experiment="E-b")
    assert publisher.status["state"] == "paused"  # every running one is paused
    publisher.on_engine_state("running", "suspending", experiment="E-b")
    publisher.on_engine_state("running", "paused", experiment="E-a")
    assert running() == {"E-a": ("running", "running"), "E-b": ("running", "running")}
    feed(publisher, b.stop())
    publisher.on_engine_state("idle", "running", experiment="E-b")  # its lane is done
    assert publisher.status["state"] == "running" and running() == {"E-a": ("running", "running")}
    # a lane paused before its run starts: the run starts paused
    c = Run("E-c", "count", 1)
    publisher.on_engine_state("paused", "running", experiment="E-c")
    feed(publisher, c.start())
    assert running()["E-c"] == ("paused", "paused")


def test_one_run_engine_without_experiment_pauses_every_entry(publisher):
    a = Run("E-a", "scan", 3)
    publisher.on_engine_state("running", "idle")
    feed(publisher, a.start())
    publisher.on_engine_state("paused", "running")
    assert publisher.status["running"]["E-a"]["state"] == "paused"
    assert publisher.status["state"] == "paused" and publisher.status["engine_state"] == "paused"
    feed(publisher, a.stop())
    publisher.on_engine_state("idle", "paused")
    assert publisher.status["state"] == "idle" and publisher.status["running"] == {}


def test_two_run_engines_through_attach_each_pause_their_own():
    """Two RunEngines (two lanes) attached with their experiment: one pauses, the other runs
    on, on the wire too."""
    proxy = StreamProxy(LOOPBACK, LOOPBACK).start()
    pub = StreamPublisher(proxy.in_address, heartbeat=None, lab="sim", progress_rate=0)
    lanes = {
        "E-one": RunEngine({}, context_managers=[]),
        "E-two": RunEngine({}, context_managers=[]),
    }
    for exp_id, RE in lanes.items():
        attach(RE, publisher=pub, experiment=lambda e=exp_id: e)
    go_on = threading.Event()
    try:
        pub.wait_connected()
        with load_lab(speed=2000) as lab, Subscriber(proxy.out_address, documents=False) as sub:
            proxy.wait_for_subscribers(1, STATUS_PREFIX + b" ")

            def plan(exp_id: str, pause: bool):
                yield from bps.open_run(md={"experiment_id": exp_id, "num_points": 2})
                yield from bps.checkpoint()
                yield from bps.trigger_and_read([lab["thermometer"]])
                if pause:
                    yield from bps.pause()
                else:
                    yield from bps.wait_for([lambda: _wait(go_on)])
                yield from bps.trigger_and_read([lab["thermometer"]])
                yield from bps.close_run()

            def lane_two():
                lanes["E-two"](plan("E-two", pause=False))

            two = threading.Thread(target=lane_two)
            two.start()
            with pytest.raises(RunEngineInterrupted):
                lanes["E-one"](plan("E-one", pause=True))
            seen = []
            while (m := sub.receive(timeout=10)) is not None:
                seen.append(m.doc)
                running = m.doc["running"]
                if running.get("E-one", {}).get("state") == "paused" and "E-two" in running:
                    break
            last = seen[-1]
            assert last["running"]["E-two"]["state"] == "running"
            assert last["running"]["E-one"]["progress"] == {"done": 1, "total": 2}
            assert last["state"] == "running"
            go_on.set()
            two.join(30)
            lanes["E-one"].resume()
            assert pub.status["running"] == {} and pub.status["state"] == "idle"
    finally:
        go_on.set()
        pub.close()
        proxy.stop()


async def _wait(event: threading.Event) -> None:
    import asyncio

    while not event.is_set():
        await asyncio.sleep(0.01)


def test_progress_counts_the_primary_streams_events_only(publisher):
    """num_points counts the primary stream's events: optimize's 8 trials and its one ``best``
    event read 8/8, not 9/8."""
    run = Run("E-opt", "optimize", 2)
    feed(publisher, run.start(), run.descriptor(), run.descriptor("best"))
    feed(publisher, run.event(), run.event(), run.event(stream=1))
    assert progress(publisher) == {"E-opt": (2, 2)}
    assert render.progress_text(publisher.status["progress"]) == "2/2"


def test_a_status_line_says_the_progress_and_is_printed_once(capsys):
    show = render.EventPrinter()
    running = {"state": "running", "experiment_id": "E-1", "run_uid": "R-1"}
    for done in (0, 0, 1, 1):
        show(Event("status", {**running, "progress": {"done": done, "total": None}}))
    show(Event("status", {**running, "progress": {"done": 9, "total": 8}}))
    spectrum = {"spectrometer_spectrum": [0.1, 0.2, 0.3], "thermometer_temperature": 25.123456789}
    show(Event("document", {"name": "event", "doc": {"seq_num": 1, "data": spectrum}}))
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "worker running E-1 0 events",
        "worker running E-1 1 event",
        "worker running E-1 9 events",
        "event 1: spectrometer_spectrum=[3 values], thermometer_temperature=25.1235",
    ]


def test_watch_on_this_machine_counts_as_the_gateway_does():
    from remotelab.cli.data import RunView

    counts = {}
    for points, name in ((2, "E-opt"), (None, "E-tit")):
        view, run = RunView(name), Run(name, "plan", points)
        for doc in (run.start(), run.descriptor(), run.descriptor("best")):
            view.document(*doc)
        for doc in (run.event(), run.event(), run.event(stream=1)):
            view.document(*doc)
        counts[name] = view.progress.tasks[0].fields["count"]
        assert len(view.events) == 3  # the table still shows every stream's events
    assert counts == {"E-opt": "2/2", "E-tit": "2 events"}


def test_the_gateway_sends_arrays_as_json_lists_not_numpy_reprs():
    import json

    import numpy as np

    from remotelab.api.routes.live import sse

    spectrum = np.linspace(0, 1, 200)
    sent = sse("document", {"name": "event", "doc": {"data": {"spectrum": spectrum}}}).decode()
    assert "array(" not in sent and "\\n" not in sent
    data = json.loads(sent.split("data: ", 1)[1])
    assert data["doc"]["data"]["spectrum"] == spectrum.tolist()


def test_a_status_line_gives_each_running_experiments_own_state():
    status = {
        "state": "running",
        "running": {
            "E-a": {"state": "paused", "progress": {"done": 3, "total": 8}},
            "E-b": {"state": "running", "progress": {"done": 5, "total": None}},
        },
    }
    assert render.status_line(status) == "worker: E-a paused 3/8; E-b running 5 events"
    said = {"ok": True, "note": "pause requested: pending until the plan's next checkpoint"}
    assert render.done("pause", "sim", said) == f"lab sim: pause: {said['note']}"
    assert render.done("hold", "sim") == "lab sim: hold done"
