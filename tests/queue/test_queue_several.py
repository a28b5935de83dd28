"""Several experiments running at once, as the queue sees them: per-experiment control, the
lab-wide forms (several running: name one; abort: all), the merged reservations and why
queued experiments wait. On the in-memory Prefect adapter, with stub workers answering over
a real control channel."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _several_support import MEASURE, StubWorker, start, stub
from remotelab.errors import ExperimentStateError, SeveralRunningError
from remotelab.queue import ExperimentQueue, ExperimentState, listing
from remotelab.queue.commands import Abort, Pause, Reply, Resume, Stop
from remotelab.queue.fake import FakePrefectLab
from remotelab.queue.service import default_registry


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
        "samples": {"at": {}, "consumed": {}},
    }
    exp = q.submit("measure", MEASURE, submitter="ada")
    assert q.annotate([q.get(exp.id)])[0].waiting_for is None
