"""Faults that would drain the queue hold the lab instead: the policy, and the worker on the
in-memory Prefect adapter with the simulated lab."""

from __future__ import annotations

import sqlite3

import pytest

from remotelab.errors import SafeStateError, StoreWriteError
from remotelab.queue import ExperimentQueue, ExperimentState
from remotelab.queue.commands import Release
from remotelab.queue.fake import FakePrefectLab
from remotelab.queue.service import default_registry
from remotelab.sim import Fault, inject_fault
from remotelab.worker import LabWorker
from remotelab.worker.faults import DiskWatch, FaultPolicy, kind_of, lab_fault


def full_disk() -> StoreWriteError:
    try:
        raise sqlite3.OperationalError("database or disk is full")
    except sqlite3.OperationalError as exc:
        return StoreWriteError("event", "runs.sqlite", exc)


def test_a_full_store_is_the_labs_fault_with_the_real_cause():
    err = full_disk()
    assert err.full
    wrapped = RuntimeError("the plan failed")
    wrapped.__cause__ = err
    reason = lab_fault(wrapped)
    assert reason is not None and "disk of the run store is full" in reason
    assert "database or disk is full" in reason
    assert lab_fault(SafeStateError({"heater": "no answer"})) is not None
    assert lab_fault(ValueError("bad value")) is None


def test_the_same_failure_three_times_in_a_row_holds():
    policy = FaultPolicy(hold_after=3)
    boom = RuntimeError("sensor on fire")
    assert policy.after(failed=True, error=boom) is None
    assert policy.after(failed=True, error=boom) is None
    reason = policy.after(failed=True, error=boom)
    assert reason == "3 experiments in a row failed with RuntimeError: sensor on fire"


def test_a_success_or_another_failure_starts_the_count_again():
    policy = FaultPolicy(hold_after=2)
    assert policy.after(failed=True, error=RuntimeError("a")) is None
    assert policy.after(failed=False, error=None) is None
    assert policy.after(failed=True, error=RuntimeError("a")) is None
    assert policy.after(failed=True, error=ValueError("a")) is None
    assert policy.after(failed=True, error=ValueError("a")) is not None
    assert FaultPolicy(hold_after=0).after(failed=True, error=RuntimeError("a")) is None


def test_the_kind_is_the_innermost_cause():
    inner = ValueError("line 1\nline 2")
    outer = RuntimeError("outer")
    outer.__cause__ = inner
    assert kind_of(outer) == "ValueError: line 1"


def test_the_disk_watch_warns_below_its_floor(tmp_path):
    assert DiskWatch(tmp_path / "runs.sqlite", fraction=0.0, minimum=0).low() is None
    warning = DiskWatch(tmp_path / "runs.sqlite", minimum=2**62).low()
    assert warning is not None and "nearly full" in warning


@pytest.fixture
def setup(lab):
    fake = FakePrefectLab(lab.name)
    registry = default_registry(lab)
    q = ExperimentQueue(lab, prefect=fake, registry=registry, notify=False)
    w = LabWorker(lab, prefect=fake, registry=registry, worker_id="w1", poll_interval=60.0)
    w.start()
    yield q, w, fake
    w.close()


def test_the_worker_holds_the_lab_after_the_same_failure_three_times(setup, lab):
    q, w, fake = setup
    params = {"detectors": ["thermometer"], "num": 1}
    exps = [q.submit("measure", params, submitter="ada") for _ in range(5)]
    for _ in range(3):  # the simulated thermometer fails its next three measurements
        inject_fault(lab["thermometer"], Fault.FAIL)
    ended = []
    while (run := w.claim()) is not None:
        ended.append(w.execute(run))
    assert [e.state for e in ended] == [ExperimentState.failed] * 3
    assert fake.held  # in Prefect too
    assert [q.get(e.id).state for e in exps[3:]] == [ExperimentState.queued] * 2
    (alert,) = [a for a in w.alerts.open() if a.kind == "lab held"]
    assert "3 experiments in a row failed with" in alert.message
    assert "thermometer" in alert.message and exps[2].id in alert.message
    q.release()
    assert w.commands(Release()).ok
    w.faults.check()
    assert not [a for a in w.alerts.open() if a.kind == "lab held"]
    run = w.claim()
    assert run is not None and w.execute(run).state == ExperimentState.completed


def test_a_hold_prefect_cannot_be_told_of_holds_the_worker_until_it_can(setup, lab):
    q, w, fake = setup
    q.submit("measure", {"detectors": ["thermometer"], "num": 1}, submitter="ada")
    w.link.failed(ConnectionError("Prefect is down"))  # as the worker saw it last
    w.faults.hold("the run store's disk is full")
    assert w.held() and not fake.held  # Prefect not told yet: this worker holds it itself
    assert w.claim() is None
    w.link.ok()
    assert w.recorder.outbox.flush(5)
    assert fake.held and w.claimer.fault is None  # now Prefect holds it
