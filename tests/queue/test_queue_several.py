"""Several experiments running at once, as the queue sees them: per-experiment control, the
lab-wide forms (several running: name one; abort: all), the merged reservations and why
queued experiments wait. On the in-memory Prefect adapter, with stub workers answering over
a real control channel."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from prefect.states import Running

from remotelab.errors import ExperimentStateError, SeveralRunningError
from remotelab.queue import ExperimentQueue, ExperimentState, listing
from remotelab.queue.announcement import WorkerAnnouncement, now_iso
from remotelab.queue.commands import Abort, Command, Pause, Reply, Resume, Status, Stop
from remotelab.queue.control import ControlServer
from remotelab.queue.fake import FakePrefectLab
from remotelab.queue.service import default_registry

MEASURE = {"detectors": ["thermometer"], "num": 2}


class StubWorker:
    """A worker's control channel that says it runs ``running`` and records what it gets;
    it refuses a lab-wide command the way a worker running several does."""

    def __init__(self, fake: FakePrefectLab, worker_id: str, *, new: bool = True):
        self.running: list[dict[str, Any]] = []
        self.reservations: dict[str, Any] = {}
        self.waiting: dict[str, str] = {}
        self.got: list[Command] = []
        self.new, self.fake, self.id = new, fake, worker_id
        self.server = ControlServer(self.handle).start()

    def handle(self, command: Command) -> Reply:
        ids = [r["id"] for r in self.running]
        if isinstance(command, Status):
            if not self.new:  # a worker from before several ran: ``current`` only
                return Reply(ok=True, info={"current": ids[0] if ids else None})
            return Reply(
                ok=True,
                info={
                    "current": ids[0] if ids else None,
                    "running": self.running,
                    "reservations": self.reservations,
                    "waiting": self.waiting,
                    "concurrency": 3,
                },
            )
        self.got.append(command)
        meant = getattr(command, "experiment", None)
        if meant is None and len(ids) > 1 and not isinstance(command, Abort):
            return Reply(
                ok=False, error=f"several experiments run: {', '.join(ids)}", info={"running": ids}
            )
        if meant is not None and meant not in ids:
            return Reply(ok=False, error=f"{meant} does not run here")
        return Reply(ok=True, note=f"{type(command).__name__} {meant}")

    def announce(self) -> None:
        self.fake.announce(
            WorkerAnnouncement(
                id=self.id,
                lab=self.fake.name,
                pid=os.getpid(),
                host=socket.gethostname(),
                control=self.server.endpoint,
                heartbeat=now_iso(),
                current=self.running[0]["id"] if self.running else None,
                running=self.running if self.new else [],
            ),
            create=True,
        )

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def fake(lab) -> FakePrefectLab:
    return FakePrefectLab(lab.name)


@pytest.fixture
def q(lab, fake) -> ExperimentQueue:
    return ExperimentQueue(lab, prefect=fake, registry=default_registry(lab), notify=False)


@pytest.fixture
def stubs(fake) -> Iterator[list[StubWorker]]:
    made: list[StubWorker] = []
    yield made
    for s in made:
        s.close()


def start(q: ExperimentQueue, fake: FakePrefectLab, worker: StubWorker, n: int) -> list[str]:
    """Submit ``n`` experiments and make them run on ``worker``."""
    ids = []
    for _ in range(n):
        exp = q.submit("measure", MEASURE, submitter="ada")
        fake.set_state(exp.id, Running(message="running"), force=True)
        ids.append(exp.id)
        worker.running.append({"id": exp.id, "plan": "measure", "devices": ["thermometer"]})
    worker.announce()
    return ids


def stub(fake, stubs, worker_id="w1", **kw) -> StubWorker:
    made = StubWorker(fake, worker_id, **kw)
    stubs.append(made)
    return made


def test_submission_stores_the_devices_and_reads_them_back(q, fake):
    exp = q.submit("measure", MEASURE, submitter="ada")
    assert exp.devices == ["thermometer"]
    assert fake.read_run(exp.id).parameters["devices"] == ["thermometer"]
    edited = q.edit(exp.id, {"detectors": ["thermometer", "ph_meter"]}, by="ada", role="manager")
    assert edited.devices == ["ph_meter", "thermometer"]
    assert q.get(exp.id).devices == ["ph_meter", "thermometer"]


def test_lab_wide_controls_with_several_running_name_them(q, fake, stubs):
    w = stub(fake, stubs)
    a, b = start(q, fake, w, 2)
    for control in (q.pause, q.resume, q.stop):
        with pytest.raises(SeveralRunningError) as err:
            control()
        assert err.value.running == [a, b] and a in str(err.value)
    assert w.got == []  # nothing was sent


def test_lab_wide_abort_aborts_every_running(q, fake, stubs):
    w1, w2 = stub(fake, stubs, "w1"), stub(fake, stubs, "w2")
    (a,), (b,) = start(q, fake, w1, 1), start(q, fake, w2, 1)
    answer = q.abort("enough")
    assert set(answer["experiments"]) == {a, b}
    assert [(type(c), c.experiment) for c in w1.got] == [(Abort, a)]
    assert [(type(c), c.experiment) for c in w2.got] == [(Abort, b)]


def test_one_experiment_is_controlled_by_its_id_on_its_worker(q, fake, stubs):
    w1, w2 = stub(fake, stubs, "w1"), stub(fake, stubs, "w2")
    start(q, fake, w1, 1)
    (b, c) = start(q, fake, w2, 2)
    q.pause(experiment=c, immediate=True)
    q.resume(experiment=c)
    q.stop(experiment=b)
    q.abort("x", experiment=c)
    assert w1.got == []
    assert [(type(cmd), cmd.experiment) for cmd in w2.got] == [
        (Pause, c),
        (Resume, c),
        (Stop, b),
        (Abort, c),
    ]
    assert w2.got[0].defer is False


def test_an_experiment_that_does_not_run_is_refused(q, fake, stubs):
    w = stub(fake, stubs)
    start(q, fake, w, 1)
    waiting = q.submit("measure", MEASURE, submitter="ada")
    with pytest.raises(ExperimentStateError, match="not running"):
        q.pause(experiment=waiting.id)
    assert w.got == []


def test_one_running_lab_wide_form_still_works(q, fake, stubs):
    w = stub(fake, stubs)
    (a,) = start(q, fake, w, 1)
    q.pause()
    assert [(type(c), c.experiment) for c in w.got] == [(Pause, a)]


def test_an_old_worker_with_current_only(q, fake, stubs):
    w = stub(fake, stubs, new=False)
    (a,) = start(q, fake, w, 1)
    view = q.reservations()
    assert [r["id"] for r in view["running"]] == [a]
    assert view["reservations"] == {} and view["waiting"] == {}
    q.stop()
    assert [(type(c), c.experiment) for c in w.got] == [(Stop, a)]


def test_a_refusal_naming_several_is_several_running(q, fake, stubs):
    """The worker's own refusal (it runs several the queue did not see) maps to the typed error."""
    w = stub(fake, stubs, new=False)
    (a,) = start(q, fake, w, 1)
    w.running.append({"id": "other"})
    w.new = True
    w.running.reverse()  # its status now names another first
    w.handle = lambda c: Reply(  # type: ignore[method-assign]
        ok=False, error="several experiments run: A, B; name one", info={"running": ["A", "B"]}
    )
    w.server.handler = w.handle
    with pytest.raises(SeveralRunningError) as err:
        q.pause(experiment=a)
    assert err.value.running == ["A", "B"]


def test_reservations_merge_the_workers_and_queued_ones_say_why_they_wait(q, fake, stubs):
    w1, w2 = stub(fake, stubs, "w1"), stub(fake, stubs, "w2")
    (a,), (b,) = start(q, fake, w1, 1), start(q, fake, w2, 1)
    queued = q.submit("measure", MEASURE, submitter="bob")
    why = f"waiting for thermometer, held by {a} since 10:42:05"
    w1.reservations = {
        "thermometer": {
            "holder": a,
            "since": "2024-01-01T10:42:05+00:00",
            "block": False,
            "waiters": [{"experiment": queued.id, "since": "2024-01-01T10:43:00+00:00"}],
        }
    }
    w1.waiting = {queued.id: why}
    w2.reservations = {"arm": {"holder": b, "since": None, "block": True, "waiters": []}}
    view = q.reservations()
    assert set(view["reservations"]) == {"thermometer", "arm"}
    assert {(r["id"], r["worker"]) for r in view["running"]} == {(a, "w1"), (b, "w2")}
    assert view["waiting"] == {queued.id: why} and view["concurrency"] == 6
    page, _ = listing.list_experiments(q, [ExperimentState.queued, ExperimentState.running])
    by_id = {e.id: e for e in page}
    assert by_id[queued.id].waiting_for == why
    assert by_id[a].waiting_for is None


def test_no_worker_no_reservations(q):
    assert q.reservations() == {
        "running": [],
        "reservations": {},
        "waiting": {},
        "concurrency": 0,
        "workers": [],
    }
    exp = q.submit("measure", MEASURE, submitter="ada")
    assert q.annotate([q.get(exp.id)])[0].waiting_for is None
