"""Submitting, ordering, moving and cancelling experiments; a worker running them."""

from __future__ import annotations

import itertools

import pytest
from prefect.client.schemas.objects import StateType
from queue_helpers import wait_until

from remotelab.errors import ExperimentStateError, PlanValidationError, QueueError
from remotelab.queue import ExperimentState, Priority, pool_name


def test_submit_validates_and_lands_in_prefect(exq):
    exp = exq.submit("measure", {"detectors": ["thermometer"], "num": 2}, submitter="ada")
    assert exp.state == ExperimentState.queued
    run = exq.client.read_flow_run(exp.id)
    # the experiment is a flow run of the lab's deployment in the lab's work pool
    assert run.deployment_id == exq.deployment_id
    assert run.work_pool_name == pool_name(exq.name)
    assert run.work_queue_name == "normal"
    assert run.parameters["plan"] == "measure"
    assert run.parameters["params"] == {"detectors": ["thermometer"], "num": 2}
    assert {f"lab:{exq.name}", "priority:normal", "submitter:ada"} <= set(run.tags)
    assert exq.get(exp.id).submitter == "ada"
    with pytest.raises(PlanValidationError, match="unknown device"):
        exq.submit("measure", {"detectors": ["nope"]}, submitter="ada")
    with pytest.raises(QueueError, match="unknown priority"):
        exq.submit("measure", {}, submitter="ada", priority="asap")
    assert [e.id for e in exq.list()] == [exp.id]


def test_priority_order_and_moves(exq):
    low = exq.submit("steps", {"n": 1}, submitter="a", priority="low")
    n1 = exq.submit("steps", {"n": 1}, submitter="a")
    n2 = exq.submit("steps", {"n": 1}, submitter="a")
    urgent = exq.submit("steps", {"n": 1}, submitter="a", priority=Priority.urgent)
    assert [e.id for e in exq.waiting()] == [urgent.id, n1.id, n2.id, low.id]
    exq.move(n2.id, to="front")
    assert [e.id for e in exq.waiting()] == [n2.id, urgent.id, n1.id, low.id]
    assert exq.get(n2.id).priority == Priority.urgent  # it took the place's priority
    exq.move(n2.id, to="back")
    assert [e.id for e in exq.waiting()] == [urgent.id, n1.id, low.id, n2.id]
    exq.move(n2.id, behind=urgent.id)
    assert [e.id for e in exq.waiting()] == [urgent.id, n2.id, n1.id, low.id]
    exq.move(low.id, behind=n2.id)
    assert [e.id for e in exq.waiting()] == [urgent.id, n2.id, low.id, n1.id]
    with pytest.raises(QueueError):
        exq.move(low.id)


def test_worker_runs_in_priority_order(exq, lab, start_worker):
    exq.hold()  # nothing starts until all are queued
    a = exq.submit("steps", {"n": 1}, submitter="a", priority="low")
    b = exq.submit("steps", {"n": 1}, submitter="a")
    c = exq.submit("steps", {"n": 1}, submitter="a", priority="urgent")
    d = exq.submit("steps", {"n": 1}, submitter="a")
    exq.move(d.id, to="front")
    w = start_worker(lab)
    exq.release()
    ends = [exq.wait_for(x.id, timeout=60) for x in (a, b, c, d)]
    assert all(e.state == ExperimentState.completed for e in ends)
    order = [e.id for e in sorted(ends, key=lambda e: e.started)]
    assert order == [d.id, c.id, b.id, a.id]
    # one at a time: each started after the previous ended
    by_start = sorted(ends, key=lambda e: e.started)
    assert all(x.ended <= y.started for x, y in itertools.pairwise(by_start))
    # every experiment's run uids are recorded and its documents carry its id
    for e in ends:
        assert len(e.run_uids) == 1 and e.exit_status == "success"
        (start,) = w.docs("start", e.id)
        assert start["uid"] == e.run_uids[0] and start["submitter"] == "a"


def test_cancel_waiting(exq, lab, start_worker):
    exq.hold()
    keep = exq.submit("steps", {"n": 1}, submitter="a")
    drop = exq.submit("steps", {"n": 1}, submitter="a")
    out = exq.cancel(drop.id, by="ada", reason="wrong sample")
    assert out.state == ExperimentState.cancelled and "wrong sample" in out.message
    assert [e.id for e in exq.waiting()] == [keep.id]
    with pytest.raises(ExperimentStateError):
        exq.cancel(drop.id)
    w = start_worker(lab)
    exq.release()
    assert exq.wait_for(keep.id).state == ExperimentState.completed
    assert exq.get(drop.id).state == ExperimentState.cancelled
    assert w.docs("start", drop.id) == []


def test_plan_failure_marks_failed_and_queue_goes_on(exq, lab, start_worker):
    start_worker(lab)
    bad = exq.submit("boom", {"message": "sensor on fire"}, submitter="a")
    good = exq.submit("steps", {"n": 1}, submitter="a")
    failed = exq.wait_for(bad.id)
    assert failed.state == ExperimentState.failed
    assert "RuntimeError: sensor on fire" in failed.error
    assert failed.exit_status == "fail"
    assert exq.wait_for(good.id).state == ExperimentState.completed
    # the failure left the devices safe: the stirrer it started is stopped
    assert lab["stirrer"].setpoint.get() == 0
    # the traceback and a summary are in Prefect: logs and an artifact on the flow run
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    def recorded():
        logs = exq.client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[bad.id])))
        arts = exq.client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[bad.id]))
        )
        ok = any("Traceback" in x.message for x in logs) and arts
        return (logs, arts) if ok else None

    _logs, arts = wait_until(recorded, what="logs and artifact")
    assert "boom" in arts[0].data and "sensor on fire" in arts[0].data
    run = exq.client.read_flow_run(bad.id)
    assert run.state.type == StateType.FAILED
