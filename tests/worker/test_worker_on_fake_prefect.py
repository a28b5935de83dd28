"""The worker's logic on the in-memory Prefect adapter: no server, the simulated lab's devices.

The same behaviours are tested on a real Prefect server in ``tests/queue``; these show the
parts (claiming, running, outcome and records, control commands, recovery) on their own.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import pytest
from prefect.states import Completed, Pending, Running, Scheduled

from remotelab.queue import ExperimentQueue, ExperimentState, signatures
from remotelab.queue.announcement import WorkerAnnouncement
from remotelab.queue.commands import Cancel, Hold, Pause, Release, Status
from remotelab.queue.fake import FakePrefectLab
from remotelab.queue.messages import RUN_UIDS_LABEL, WORKER_LABEL, worker_tag
from remotelab.queue.service import default_registry
from remotelab.worker import LabWorker

MEASURE = {"detectors": ["thermometer"], "num": 2}


class WithSlowPlan:
    """The lab's registry, plus ``slow``: stir, then read the thermometer at checkpoints
    until cancelled (it never ends by itself within a test)."""

    def __init__(self, lab: Any):
        self.stock = default_registry(lab)
        self.reading = threading.Event()

    def validate(self, name: str, params: dict[str, Any], *, lab: Any, role: str = "manager"):
        if name == "slow":
            return ("slow", dict(params))
        return self.stock.validate(name, params, lab=lab, role=role)

    def build(self, validated: Any, lab: Any, *, md: dict[str, Any] | None = None):
        if not (isinstance(validated, tuple) and validated[0] == "slow"):
            return self.stock.build(validated, lab, md=md)

        @bpp.run_decorator(md={"plan_name": "slow", **(md or {})})
        def inner():
            yield from bps.mv(lab["stirrer"], 300)
            for _ in range(100_000):
                yield from bps.checkpoint()
                yield from bps.trigger_and_read([lab["thermometer"]])
                self.reading.set()
                yield from bps.sleep(0.01)

        return inner()


@pytest.fixture
def fake(lab) -> FakePrefectLab:
    return FakePrefectLab(lab.name)


@pytest.fixture
def registry(lab) -> WithSlowPlan:
    return WithSlowPlan(lab)


@pytest.fixture
def q(lab, fake, registry) -> ExperimentQueue:
    return ExperimentQueue(lab, prefect=fake, registry=registry, notify=False)


@pytest.fixture
def worker(lab, fake, registry):
    w = LabWorker(lab, prefect=fake, registry=registry, worker_id="w1", poll_interval=60.0)
    w.start()
    yield w
    w.close()


def test_claims_in_priority_order_and_runs_with_labels_and_a_summary(q, fake, worker):
    low = q.submit("measure", MEASURE, submitter="ada", priority="low")
    normal = q.submit("measure", MEASURE, submitter="ada")
    urgent = q.submit("measure", MEASURE, submitter="bob", priority="urgent")
    order = []
    while (run := worker.claim()) is not None:
        assert q.get(run.id).worker == "w1"  # known from the claim on
        order.append(str(run.id))
        done = worker.execute(run)
        assert done.state == ExperimentState.completed
    assert order == [urgent.id, normal.id, low.id]
    exp = q.get(urgent.id)  # the final state says it all, labels written or not
    assert exp.state == ExperimentState.completed and exp.worker == "w1"
    assert exp.exit_status == "success" and len(exp.run_uids) == 1
    worker.recorder.close()  # the labels and the summaries are written
    labels = fake.read_run(urgent.id).labels
    assert labels[WORKER_LABEL] == "w1" and labels[RUN_UIDS_LABEL] == exp.run_uids[0]
    ((summary, description, logs),) = fake.records[urgent.id]
    assert f"| run | `{exp.run_uids[0]}`" in summary and "measure" in description and not logs
    assert worker.completed == 3


def test_a_held_lab_claims_nothing_until_released(q, worker):
    exp = q.submit("measure", MEASURE, submitter="ada")
    assert worker.held() is False
    q.hold()  # (this queue sends no messages: the test delivers them)
    assert worker.held() is False  # read a moment ago, until a message says otherwise
    assert worker.commands(Hold()).ok
    assert worker.claim() is None
    q.release()
    assert worker.commands(Release()).ok
    assert str(worker.claim().id) == exp.id


def test_a_claim_another_worker_won_is_refused(q, fake, worker):
    exp = q.submit("measure", MEASURE, submitter="ada")
    assert fake.set_state(exp.id, Pending(message=f"{worker_tag('w2')} claimed")).accepted
    assert worker.claim() is None
    assert q.get(exp.id).worker == "w2"


def test_a_stale_view_of_a_finished_run_is_let_go(q, fake, worker):
    exp = q.submit("measure", MEASURE, submitter="ada")
    stale = worker.candidates()
    fake.set_state(exp.id, Pending(message=f"{worker_tag('w2')} claimed"))
    fake.set_state(exp.id, Running(message=f"{worker_tag('w2')} running"))
    fake.set_state(exp.id, Completed(message=f"{worker_tag('w2')} completed"))
    worker.claimer.queue.keep(stale)
    assert worker.claim() is None  # Prefect took the Pending (a re-run) …
    now = q.get(exp.id)
    assert now.state == ExperimentState.completed  # … and it was put back
    assert now.message == f"{worker_tag('w2')} completed"


def test_an_invalid_submission_is_refused_by_the_worker_and_the_lab_left_safe(lab, q, fake, worker):
    """The worker validates again what it runs: a signed run the lab's plans refuse fails."""
    parameters = {
        "plan": "measure",
        "params": {"detectors": ["nope"]},
        "submitter": "eve",
        "role": "researcher",
    }
    run = fake.create_run(
        signatures.signed(
            q.signer, lab.name, "k1", parameters, priority="normal", approval="not needed"
        ),
        Scheduled(),
        tags=[f"lab:{lab.name}", "priority:normal"],
        work_queue="normal",
        idempotency_key="k1",
    )
    lab["stirrer"].set(200).wait(5)
    done = worker.execute(worker.claim())
    assert str(run.id) == done.id
    assert done.state == ExperimentState.failed and "nope" in done.message
    # it could not say which devices it would drive: all but the shared ones were its own
    assert "; its devices safe (" in done.message and "stirrer" in done.message
    assert done.message.endswith(") [runs -] [exit -]")
    assert lab["stirrer"].setpoint.get() == 0  # its declared safe state
    worker.recorder.close()
    ((_summary, _description, logs),) = fake.records[done.id]
    assert any("Traceback" in entry.message for entry in logs)


def test_cancel_through_the_command_table_aborts_the_plan_and_leaves_the_lab_safe(
    lab, q, fake, worker, registry
):
    exp = q.submit("slow", {}, submitter="ada")
    run = worker.claim()
    ended: list = []
    runner = threading.Thread(target=lambda: ended.append(worker.execute(run)))
    runner.start()
    assert registry.reading.wait(30), "the plan never read the thermometer"
    other = worker.commands(Cancel(experiment="someone-else", reason="x"))
    assert not other.ok and "not the one running" in other.error
    status = worker.commands(Status())
    assert status.ok and status.info["current"] == exp.id
    assert worker.commands(Cancel(experiment=exp.id, reason="cancelled by mia")).ok
    runner.join(30)
    (done,) = ended
    assert done.state == ExperimentState.cancelled and done.exit_status == "abort"
    assert "cancelled by mia" in done.message and "devices safe" in done.message
    assert lab["stirrer"].setpoint.get() == 0
    assert worker.commands(Pause()).error == "worker w1 runs no experiment now"


def test_recovery_crashes_a_dead_workers_experiment_and_leaves_a_live_ones(lab, q, fake, registry):
    dead = q.submit("measure", MEASURE, submitter="ada")
    alive = q.submit("measure", MEASURE, submitter="ada")
    for exp, owner in ((dead, "gone"), (alive, "busy")):
        fake.set_state(exp.id, Pending(message=f"{worker_tag(owner)} claimed"))
        fake.set_state(exp.id, Running(message=f"{worker_tag(owner)} running"))
    beat = datetime.now(UTC).isoformat()
    old = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    fake.announce(
        WorkerAnnouncement(id="busy", lab=lab.name, host="pc2", heartbeat=beat, current=alive.id),
        create=True,
    )
    fake.announce(
        WorkerAnnouncement(id="gone", lab=lab.name, host="pc3", heartbeat=old), create=True
    )
    w = LabWorker(lab, prefect=fake, registry=registry, worker_id="w9")
    try:
        crashed = w.start()
        assert [e.id for e in crashed] == [dead.id]
        assert q.get(dead.id).state == ExperimentState.crashed
        assert q.get(alive.id).state == ExperimentState.running
        assert fake.announcement("gone") is None  # the dead worker's announcement is removed
        assert {p["id"] for p in w.peers()} == {"busy"}
    finally:
        w.close()
    assert fake.announcement("w9") is None  # withdrawn on close


def test_the_announcement_says_where_and_what(fake, worker):
    (me,) = [a for a in fake.workers() if a.id == "w1"]
    assert me.pid == os.getpid() and me.host == socket.gethostname()
    assert me.control == worker.control.endpoint and me.current is None


def test_a_plan_that_ends_before_its_start_is_told_has_its_outcome_on_disk_first(
    lab, q, fake, registry, tmp_path
):
    """A short plan can end before Prefect has taken its Running state: its outcome is in the
    outbox on disk before the worker waits for that, so a worker killed meanwhile leaves it for
    the next one (which delivers it at once) instead of an experiment marked crashed."""
    w = LabWorker(
        lab, prefect=fake, registry=registry, worker_id="w1", poll_interval=60.0,
        outbox=tmp_path / "outbox.sqlite",
    )  # fmt: skip
    gate, told = threading.Event(), threading.Event()
    start = w.claimer.start

    def slow_start(run_id, *, settle=True):
        told.set()
        assert gate.wait(30)
        return start(run_id, settle=settle)

    w.claimer.start = slow_start
    w.start()
    try:
        exp = q.submit("measure", MEASURE, submitter="ada")
        assert w.start_next() is not None
        assert told.wait(30)
        deadline = time.monotonic() + 30
        while not [r for r in w.recorder.outbox.pending() if r.kind == "state"]:
            assert time.monotonic() < deadline, "the outcome never reached the outbox"
            time.sleep(0.01)
        (record,) = [r for r in w.recorder.outbox.pending() if r.kind == "state"]
        assert record.experiment == exp.id and record.payload["state"]["type"] == "COMPLETED"
        assert fake.history(exp.id)[-1].type.value == "PENDING"  # claimed, not yet Running
        gate.set()
        deadline = time.monotonic() + 30
        while q.get(exp.id).state != ExperimentState.completed:
            assert time.monotonic() < deadline, "the outcome was not delivered after the start"
            time.sleep(0.01)
        types = [s.type.value for s in fake.history(exp.id)]
        assert types[-2:] == ["RUNNING", "COMPLETED"]
    finally:
        gate.set()
        w.close()
