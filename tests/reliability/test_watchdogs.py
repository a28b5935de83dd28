"""Watchdogs on the simulated lab and the in-memory Prefect adapter: a device that never
settles, an operator question left unanswered, a queue that should move and does not.

The watchdogs' clock is the test's (advanced by hand): nothing waits out a timeout.
"""

from __future__ import annotations

import threading

import pytest
from queue_helpers import wait_until

from remotelab.queue import ExperimentQueue, ExperimentState
from remotelab.queue.announcement import WorkerAnnouncement, now_iso
from remotelab.queue.commands import Abort
from remotelab.queue.fake import FakePrefectLab
from remotelab.queue.service import default_registry
from remotelab.sim import Fault, inject_fault
from remotelab.worker import LabWorker
from remotelab.worker.watchdogs import STALL_FLOOR, Watchdogs


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(lab):
    fake = FakePrefectLab(lab.name)
    registry = default_registry(lab)  # the lab file adds the queue tests' plans
    q = ExperimentQueue(lab, prefect=fake, registry=registry, notify=False)
    worker = LabWorker(lab, prefect=fake, registry=registry, worker_id="w1", poll_interval=0.05)
    clock = Clock()  # the worker's watchdogs, on the test's clock
    dogs = Watchdogs.for_worker(worker, clock=clock, question_timeout=600, queue_stall=300)
    worker.watchdogs = dogs
    worker.start()
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    yield q, worker, dogs, clock, fake
    worker.shutdown("test over")
    thread.join(60)
    worker.close()


def peer(lab: str) -> WorkerAnnouncement:
    """A live worker of the lab on another host (its heartbeat now)."""
    return WorkerAnnouncement(id="peer", lab=lab, pid=1, host="instrument-pc", heartbeat=now_iso())


def alerts(worker, kind: str) -> list[str]:
    return [a.message for a in worker.alerts.open() if a.kind == kind]


def test_a_device_that_never_settles_raises_an_alert_and_abort_leaves_it_safe(setup, lab):
    q, worker, dogs, clock, _ = setup
    stirrer = lab["stirrer"]
    stirrer.operation_timeout = 1e12  # no timeout of its own to end the hang
    inject_fault(stirrer, Fault.HANG)  # its next move never finishes by itself
    exp = q.submit("steps", {"n": 5, "stir": 400}, submitter="ada")
    wait_until(lambda: worker.current is not None, what="it runs")
    wait_until(lambda: dogs.watches[0].last_msg == "set of stirrer", what="the stirrer set")
    dogs.check()
    assert alerts(worker, "stalled") == []  # not yet: nothing is late
    clock.now += STALL_FLOOR + 1
    dogs.check()
    (alert,) = alerts(worker, "stalled")
    assert exp.id in alert and "set of stirrer" in alert and "stopped answering" in alert
    assert worker.commands(Abort(experiment=exp.id, reason="stirrer stuck")).ok
    wait_until(lambda: q.get(exp.id).state.finished, what="it ended")
    assert q.get(exp.id).state == ExperimentState.cancelled
    assert lab["stirrer"].setpoint.get() == 0  # safe
    dogs.check()
    assert alerts(worker, "stalled") == []  # closed with the experiment


def test_a_plan_that_keeps_reading_is_not_stalled(setup):
    q, worker, dogs, clock, _ = setup
    exp = q.submit("read_steps", {"sensor": "thermometer", "n": 100_000}, submitter="ada")
    wait_until(lambda: dogs.watches[0].gap is not None, what="a few documents")
    for _ in range(5):
        clock.now += 10
        seen = dogs.watches[0].last_doc
        wait_until(lambda s=seen: dogs.watches[0].last_doc != s, what="another document")
        dogs.check()
    assert alerts(worker, "stalled") == []
    q.cancel(exp.id)


def test_an_unanswered_operator_question_raises_an_alert_until_answered(setup):
    q, worker, dogs, clock, _ = setup
    exp = q.submit("confirm_then_read", {"prompt": "load tray 2"}, submitter="ada")
    wait_until(lambda: worker.question is not None, what="the question")
    dogs.check()
    clock.now += 601
    dogs.check()
    (alert,) = alerts(worker, "question unanswered")
    assert exp.id in alert and "load tray 2" in alert and "10 min" in alert
    question = worker.question
    assert question is not None
    assert worker.lanes[0].questions.answer(True).ok
    wait_until(lambda: q.get(exp.id).state.finished, what="it ended")
    dogs.check()
    assert alerts(worker, "question unanswered") == []


def test_a_queue_that_does_not_move_raises_an_alert(setup):
    q, worker, dogs, clock, fake = setup
    # a live worker on another host holds the thermometer's slot and never gives it back
    fake.announce(peer(fake.name), create=True)
    fake.slots.take("a worker on another host", ["thermometer"])
    exp = q.submit("read_steps", {"sensor": "thermometer", "n": 2}, submitter="ada")
    wait_until(lambda: exp.id in worker.dispatcher.waiting, what="the dispatcher to see it")
    dogs.check()
    clock.now += 301
    dogs.check()
    (alert,) = alerts(worker, "queue stalled")
    assert exp.id in alert and "another worker of the lab holds" in alert
    q.hold()  # a held lab is not a stalled queue
    worker.claimer.invalidate(held=True)
    wait_until(worker.held, what="the hold seen")
    dogs.check()
    assert alerts(worker, "queue stalled") == []


def test_a_slot_held_by_nobody_alive_is_freed_when_the_worker_is_alone(setup):
    """Prefect restarted and forgot the leases, or a dead worker never gave its back: with no
    other worker alive on the lab, the slot is freed and the queue goes on."""
    q, _worker, _dogs, _clock, fake = setup
    fake.slots.take("a worker that is gone", ["thermometer"])
    exp = q.submit("read_steps", {"sensor": "thermometer", "n": 2}, submitter="ada")
    assert q.wait_for(exp.id, timeout=60).state == ExperimentState.completed
