"""Several experiments at once in one lab, on the in-memory Prefect adapter and the simulated lab.

Every assertion is on what was recorded — document times and order, the reservation book,
states — never on how long something took; plans end when the test opens their gate
(:mod:`tests.worker.gated_plans`).
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import gated_plans
import pytest
from gated_plans import GATES

from remotelab.lab import Lab, lab_spec
from remotelab.plans.registry import registry_for
from remotelab.queue import ExperimentQueue, ExperimentState
from remotelab.queue.commands import Abort, Cancel, Pause, Resume
from remotelab.queue.fake import FakePrefectLab
from remotelab.worker import LabWorker

#: the simulated clock's speed (as the shared fixtures have it)
FAST = 2000.0

_names = itertools.count()


def gate() -> str:
    return f"gate-{next(_names)}"


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Wait until ``condition()`` is true (a generous bound: only a hang fails)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.002)
    raise AssertionError(f"timed out waiting for {what}")


class Documents:
    """Every document the worker's RunEngines emit, by experiment."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.all: list[tuple[str, dict[str, Any]]] = []
        self.run_of: dict[str, str] = {}  # run uid → experiment id
        self.desc_run: dict[str, str] = {}

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        with self.lock:
            self.all.append((name, doc))
            if name == "start":
                self.run_of[doc["uid"]] = doc.get("experiment_id", "")
            elif name == "descriptor":
                self.desc_run[doc["uid"]] = doc["run_start"]

    def of(self, exp_id: str) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            out = []
            for name, doc in self.all:
                run = doc.get("uid") if name == "start" else doc.get("run_start")
                if name == "event":
                    run = self.desc_run.get(doc["descriptor"])
                if run is not None and self.run_of.get(run) == exp_id:
                    out.append((name, doc))
            return out

    def span(self, exp_id: str) -> tuple[float, float]:
        docs = self.of(exp_id)
        start = next(d["time"] for n, d in docs if n == "start")
        stop = next(d["time"] for n, d in docs if n == "stop")
        return start, stop

    def events(self, exp_id: str) -> int:
        return sum(1 for n, _ in self.of(exp_id) if n == "event")


def parallel_lab(**shared: bool) -> Lab:
    """The shipped simulated lab (three lanes), with more devices shared if asked."""
    spec = lab_spec()
    devices = {
        name: dev.model_copy(update={"shared": shared.get(name, dev.shared)})
        for name, dev in spec.devices.items()
    }
    return Lab(spec.model_copy(update={"concurrency": 3, "devices": devices}), speed=FAST)


@pytest.fixture
def plab():
    with parallel_lab() as lab:
        yield lab


@pytest.fixture
def setup(plab):
    fake = FakePrefectLab(plab.name)
    registry = registry_for(plab)
    registry.add_module(gated_plans.__name__)
    docs = Documents()
    q = ExperimentQueue(plab, prefect=fake, registry=registry, notify=False)
    worker = LabWorker(
        plab,
        prefect=fake,
        registry=registry,
        worker_id="w1",
        poll_interval=0.05,
        subscribers=[docs],
    )
    worker.start()
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    yield q, worker, docs, fake
    for name in list(GATES):
        GATES[name].set()
    worker.shutdown("test over")
    thread.join(60)
    worker.close()


def submit_gated(q, devices, *, settables=(), value=0.0, priority="normal", who="ada"):
    name = gate()
    exp = q.submit(
        "gated",
        {"devices": list(devices), "settables": list(settables), "value": value, "gate": name},
        submitter=who,
        priority=priority,
    )
    return exp, name


def running_ids(worker) -> set[str]:
    return {e.id for e in worker.running}


def ended(q, exp_id: str) -> bool:
    return q.get(exp_id).state.finished


def test_disjoint_devices_run_overlapping(setup):
    q, worker, docs, _ = setup
    a, gate_a = submit_gated(q, ["thermometer"])
    b, gate_b = submit_gated(q, ["balance"])
    wait_for(lambda: running_ids(worker) == {a.id, b.id}, "both running")
    status = worker.commands.status()
    assert {r["id"] for r in status["running"]} == {a.id, b.id}
    assert status["reservations"]["thermometer"]["holder"] == a.id
    assert status["reservations"]["balance"]["holder"] == b.id
    GATES[gate_a].set()
    GATES[gate_b].set()
    wait_for(lambda: ended(q, a.id) and ended(q, b.id), "both ended")
    (a0, a1), (b0, b1) = docs.span(a.id), docs.span(b.id)
    assert a0 < b1 and b0 < a1  # their runs overlapped
    assert q.get(a.id).state == q.get(b.id).state == ExperimentState.completed


def test_experiments_sharing_a_device_never_overlap_in_20_random_interleavings(setup):
    q, _worker, docs, _ = setup
    rng = random.Random(12)
    sensors = ["thermometer", "balance", "ph_meter"]
    for _round in range(20):
        batch = []
        for _ in range(5):
            used = rng.sample(sensors, rng.randint(1, 2))
            exp = q.submit(
                "measure", {"detectors": used, "num": rng.randint(1, 4)}, submitter="ada"
            )
            batch.append((exp.id, set(used)))
        wait_for(lambda b=batch: all(ended(q, e) for e, _ in b), "the batch ended")
        for (e1, d1), (e2, d2) in itertools.combinations(batch, 2):
            assert q.get(e1).state == ExperimentState.completed
            if d1 & d2:
                (s1, t1), (s2, t2) = docs.span(e1), docs.span(e2)
                assert t1 <= s2 or t2 <= s1, f"{e1} and {e2} share {d1 & d2} and overlapped"


def test_free_devices_start_past_a_waiting_urgent_one_that_is_not_starved(setup):
    q, worker, docs, _ = setup
    busy, gate_busy = submit_gated(q, ["thermometer"])
    wait_for(lambda: busy.id in running_ids(worker), "the first one running")
    urgent, gate_urgent = submit_gated(q, ["thermometer", "balance"], priority="urgent")
    low, gate_low = submit_gated(q, ["ph_meter"], priority="low")
    wait_for(lambda: low.id in running_ids(worker), "the low one running past the urgent one")
    waiting = worker.commands.status()["waiting"]
    assert "thermometer" in waiting[urgent.id] and busy.id in waiting[urgent.id]
    # a stream of later small experiments on the balance, which the urgent one waits for too
    small = [
        q.submit("measure", {"detectors": ["balance"], "num": 1}, submitter="bob") for _ in range(4)
    ]
    wait_for(lambda: all(s.id in worker.dispatcher.waiting for s in small), "the small ones seen")
    assert not any(q.get(s.id).state.finished or s.id in running_ids(worker) for s in small)
    GATES[gate_busy].set()
    wait_for(lambda: urgent.id in running_ids(worker), "the urgent one running")
    GATES[gate_urgent].set()
    GATES[gate_low].set()
    wait_for(lambda: all(ended(q, s.id) for s in small), "the small ones ended")
    urgent_start, _ = docs.span(urgent.id)
    assert all(docs.span(s.id)[0] >= urgent_start for s in small)
    low_start, _ = docs.span(low.id)
    assert low_start < urgent_start


def test_abort_one_of_two_leaves_its_devices_safe_and_the_other_runs_on(setup, plab):
    q, worker, docs, _ = setup
    a, _gate_a = submit_gated(q, ["thermometer"], settables=["stirrer"], value=300)
    b, gate_b = submit_gated(q, ["balance"], settables=["heater"], value=50)
    wait_for(lambda: running_ids(worker) == {a.id, b.id}, "both running")
    wait_for(lambda: docs.events(a.id) and docs.events(b.id), "both reading")
    assert worker.commands(Abort(experiment=a.id, reason="wrong sample")).ok
    wait_for(lambda: ended(q, a.id), "the aborted one ended")
    exp_a = q.get(a.id)
    assert exp_a.state == ExperimentState.cancelled and "stirrer" in exp_a.message
    assert plab["stirrer"].setpoint.get() == 0  # its own device: safe
    assert plab["heater"].setpoint.get() == 50  # the other's: left alone
    before = docs.events(b.id)
    wait_for(lambda: docs.events(b.id) > before, "the other one still reading")
    GATES[gate_b].set()
    wait_for(lambda: ended(q, b.id), "the other one ended")
    names = [n for n, _ in docs.of(b.id)]
    assert names[0] == "start" and names[-1] == "stop" and "event" in names
    assert docs.of(b.id)[-1][1]["exit_status"] == "success"
    assert q.get(b.id).state == ExperimentState.completed


def test_pause_one_the_other_keeps_running_then_resume_it(setup):
    q, worker, docs, _ = setup
    a, gate_a = submit_gated(q, ["thermometer"])
    b, gate_b = submit_gated(q, ["balance"])
    wait_for(lambda: running_ids(worker) == {a.id, b.id}, "both running")
    wait_for(lambda: docs.events(a.id) and docs.events(b.id), "both reading")
    refused = worker.commands(Pause())
    assert not refused.ok and set(refused.info["running"]) == {a.id, b.id}
    assert worker.commands(Pause(experiment=a.id, defer=False)).ok
    lane_a = next(lane for lane in worker.lanes if lane.experiment_id() == a.id)
    wait_for(lambda: str(lane_a.RE.state) == "paused", "a paused")
    wait_for(lambda: q.get(a.id).state == ExperimentState.paused, "a paused in Prefect")
    paused_at = docs.events(a.id)
    before = docs.events(b.id)
    wait_for(lambda: docs.events(b.id) > before + 3, "b reading while a is paused")
    assert docs.events(a.id) == paused_at
    assert worker.commands(Resume(experiment=a.id)).ok
    wait_for(lambda: docs.events(a.id) > paused_at, "a reading again")
    GATES[gate_a].set()
    GATES[gate_b].set()
    wait_for(lambda: ended(q, a.id) and ended(q, b.id), "both ended")
    assert q.get(a.id).state == q.get(b.id).state == ExperimentState.completed


def test_lab_wide_abort_aborts_every_running_experiment(setup):
    q, worker, _docs, _ = setup
    a, _ = submit_gated(q, ["thermometer"])
    b, _ = submit_gated(q, ["balance"])
    wait_for(lambda: running_ids(worker) == {a.id, b.id}, "both running")
    assert worker.commands(Abort(reason="evacuate")).ok
    wait_for(lambda: ended(q, a.id) and ended(q, b.id), "both ended")
    assert q.get(a.id).state == q.get(b.id).state == ExperimentState.cancelled
    wait_for(lambda: not worker.book.snapshot(), "every reservation freed")


def test_a_cancel_that_meets_an_abort_already_under_way_is_done_not_refused(setup, plab):
    """A cancel reaches the worker twice (the control channel, and Cancelling in Prefect):
    the second abort finds the RunEngine already aborting, and that is not an error."""
    q, worker, docs, _ = setup
    a, _ = submit_gated(q, ["thermometer"], settables=["stirrer"], value=300)
    wait_for(lambda: running_ids(worker) == {a.id}, "it runs")
    wait_for(lambda: docs.events(a.id), "it reads")
    runner = next(lane.runner for lane in worker.lanes if lane.experiment_id() == a.id)
    real_abort = runner.RE.abort

    def another_abort_landed_first(reason: str = "") -> Any:
        real_abort("cancel seen in Prefect")  # the other path, between state read and call
        return real_abort(reason)  # the RunEngine is aborting now: TransitionError

    runner.RE.abort = another_abort_landed_first
    reply = worker.commands(Cancel(experiment=a.id, reason="wrong sample"))
    assert reply.ok, reply.error
    wait_for(lambda: ended(q, a.id), "it ended")
    assert q.get(a.id).state == ExperimentState.cancelled
    assert docs.of(a.id)[-1][1]["exit_status"] == "abort"
    assert plab["stirrer"].setpoint.get() == 0


def test_plans_waiting_for_the_shared_arm_get_it_in_order(setup):
    q, worker, docs, _ = setup
    first, gate_1 = gate(), gate()
    e1 = q.submit(
        "arm_block", {"sensor": "thermometer", "hold": ["arm"], "gate": first}, submitter="a"
    )
    wait_for(lambda: worker.book.holder_of("arm") == e1.id, "the first holding the arm")
    e2 = q.submit(
        "arm_block", {"sensor": "balance", "hold": ["arm"], "gate": gate_1}, submitter="b"
    )
    wait_for(lambda: worker.book.waits(e2.id), "the second waiting for the arm")
    e3 = q.submit(
        "arm_block", {"sensor": "ph_meter", "hold": ["arm"], "gate": gate_1}, submitter="c"
    )
    wait_for(lambda: worker.book.waits(e3.id), "the third waiting for the arm")
    waiting = worker.commands.status()["waiting"]
    assert f"arm, held by {e1.id}" in waiting[e2.id]
    GATES[first].set()
    GATES[gate_1].set()
    wait_for(lambda: all(ended(q, e.id) for e in (e1, e2, e3)), "all ended")
    got_arm = sorted((e.id for e in (e1, e2, e3)), key=lambda e: docs.span(e)[1])
    assert got_arm == [e1.id, e2.id, e3.id]
    assert all(q.get(e.id).state == ExperimentState.completed for e in (e1, e2, e3))


def test_two_plans_holding_two_shared_devices_do_not_deadlock():
    with parallel_lab(balance=True) as lab:
        fake = FakePrefectLab(lab.name)
        registry = registry_for(lab)
        registry.add_module(gated_plans.__name__)
        q = ExperimentQueue(lab, prefect=fake, registry=registry, notify=False)
        done = defaultdict(int)
        worker = LabWorker(lab, prefect=fake, registry=registry, worker_id="w2", poll_interval=0.05)
        worker.start()
        thread = threading.Thread(target=worker.run_forever, daemon=True)
        thread.start()
        try:
            opened = gate()
            GATES[opened].set()
            exps = [
                q.submit(
                    "arm_block",
                    {"sensor": sensor, "hold": hold, "gate": opened},
                    submitter="ada",
                )
                for sensor, hold in [
                    ("thermometer", ["arm", "balance"]),
                    ("ph_meter", ["balance", "arm"]),
                ]
                * 5
            ]
            wait_for(lambda: all(ended(q, e.id) for e in exps), "all ended")
            for e in exps:
                done[q.get(e.id).state] += 1
        finally:
            worker.shutdown("test over")
            thread.join(60)
            worker.close()
        assert done == {ExperimentState.completed: 10}


def test_a_plan_driving_a_device_it_did_not_reserve_fails(setup):
    q, _worker, _docs, _ = setup
    exp = q.submit("sneaky", {"sensor": "thermometer", "other": "balance"}, submitter="a")
    wait_for(lambda: ended(q, exp.id), "it ended")
    done = q.get(exp.id)
    assert done.state == ExperimentState.failed and "balance" in done.message


def test_a_cancel_before_running_is_recorded_once_the_plan_stopped_safe(setup, plab):
    """Running is proposed while the plan starts: a cancel that lands first (Prefect's UI sets
    Cancelling on the Pending run) stops the plan, and the run ends Cancelled only once its
    devices are safe, with the canceller's reason — never Cancelled while the plan still ran."""
    from prefect.client.schemas.objects import StateType
    from prefect.states import State

    q, worker, docs, fake = setup
    let_running = threading.Event()
    ends: list[tuple[str, bool]] = []  # each Cancelled written: its message, plan stopped yet?
    real_set_state = fake.set_state
    target: dict[str, str] = {}

    def set_state(run_id, state, *, force=False):
        if str(run_id) == target.get("id"):
            if state.type == StateType.RUNNING:
                assert let_running.wait(30)
            if state.type == StateType.CANCELLED:
                stopped = any(n == "stop" for n, _ in docs.of(str(run_id)))
                ends.append((state.message or "", stopped))
        return real_set_state(run_id, state, force=force)

    fake.set_state = set_state
    q.hold()
    a, _gate = submit_gated(q, ["thermometer"], settables=["stirrer"], value=300)
    target["id"] = a.id
    q.release()
    worker.claimer.invalidate(held=True)
    wait_for(lambda: docs.events(a.id), "the plan reading while its run is still Pending")
    assert plab["stirrer"].setpoint.get() == 300
    cancelling = State(type=StateType.CANCELLING, message="cancelled by bob: wrong sample")
    assert real_set_state(a.id, cancelling).accepted
    let_running.set()
    wait_for(lambda: ended(q, a.id), "the cancelled one ended")
    done = q.get(a.id)
    assert done.state == ExperimentState.cancelled
    assert "wrong sample" in done.message and "safe" in done.message
    assert ends and all(stopped for _, stopped in ends)
    assert docs.of(a.id)[-1][1]["exit_status"] == "abort"
    assert plab["stirrer"].setpoint.get() == 0
