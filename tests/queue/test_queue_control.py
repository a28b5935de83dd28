"""Controls: cancel and abort a running plan, pause/resume, stop, hold/release, approval,
operator questions, and two workers on one lab."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from queue_helpers import wait_until, write_lab

from remotelab.errors import ExperimentStateError
from remotelab.lab import load_lab
from remotelab.queue import ExperimentQueue, ExperimentState
from remotelab.queue.service import needs_approval

LONG = {"n": 100_000, "step_s": 0.01, "stir": 400}


def running_with_events(exq, w, exp_id, n=1):
    wait_until(lambda: len(w.docs("event", exp_id)) >= n, what="events of the running plan")
    assert exq.get(exp_id).state == ExperimentState.running


def test_cancel_running_aborts_plan_and_makes_devices_safe(exq, lab, start_worker):
    w = start_worker(lab)
    exp = exq.submit("steps", LONG, submitter="ada")
    running_with_events(exq, w, exp.id)
    assert lab["stirrer"].setpoint.get() == 400
    exq.cancel(exp.id, by="bob", reason="wrong sample")
    done = exq.wait_for(exp.id)
    assert done.state == ExperimentState.cancelled
    assert "wrong sample" in done.message and "devices safe" in done.message
    (stop,) = w.docs("stop", exp.id)
    assert stop["exit_status"] == "abort"
    assert done.exit_status == "abort"
    assert lab["stirrer"].setpoint.get() == 0 and abs(lab["stirrer"].speed.get()) < 5
    assert lab["heater"].setpoint.get() == 25
    # the lab goes on (submitted now: a next experiment would stir the stirrer again)
    nxt = exq.submit("steps", {"n": 1}, submitter="ada")
    assert exq.wait_for(nxt.id).state == ExperimentState.completed


def test_cancel_requested_in_prefect_is_honoured(exq, lab, start_worker):
    """Cancelling from Prefect's UI/CLI (state Cancelling) reaches the RunEngine too."""
    from prefect.client.schemas.objects import StateType
    from prefect.states import State

    w = start_worker(lab)
    exp = exq.submit("steps", LONG, submitter="ada")
    running_with_events(exq, w, exp.id)
    exq.client.set_flow_run_state(exp.id, State(type=StateType.CANCELLING, message="from UI"))
    done = exq.wait_for(exp.id)
    assert done.state == ExperimentState.cancelled
    assert w.docs("stop", exp.id)[0]["exit_status"] == "abort"


def test_pause_resume_then_stop(exq, lab, start_worker):
    w = start_worker(lab)
    exp = exq.submit("steps", LONG, submitter="ada")
    running_with_events(exq, w, exp.id)
    exq.pause()
    paused = exq.wait_for(exp.id, [ExperimentState.paused])
    assert paused.state_name == "Paused"
    assert str(w.worker.RE.state) == "paused"
    before = len(w.docs("event", exp.id))
    exq.resume()
    exq.wait_for(exp.id, [ExperimentState.running])
    wait_until(lambda: len(w.docs("event", exp.id)) > before, what="events after resume")
    exq.stop()
    done = exq.wait_for(exp.id)
    assert done.state == ExperimentState.completed and "stopped early" in done.message
    assert w.docs("stop", exp.id)[0]["exit_status"] == "success"
    with pytest.raises(ExperimentStateError):
        exq.pause()  # nothing runs now


def test_pause_then_abort(exq, lab, start_worker):
    w = start_worker(lab)
    exp = exq.submit("steps", LONG, submitter="ada")
    running_with_events(exq, w, exp.id)
    exq.pause()
    exq.wait_for(exp.id, [ExperimentState.paused])
    exq.abort("operator saw smoke")
    done = exq.wait_for(exp.id)
    assert done.state == ExperimentState.cancelled and "smoke" in done.message
    assert w.docs("stop", exp.id)[0]["exit_status"] == "abort"
    assert lab["stirrer"].setpoint.get() == 0


def test_hold_finishes_current_and_starts_no_more(exq, lab, start_worker):
    w = start_worker(lab)
    # the first one waits on the operator, so it is surely still running when the lab is held
    first = exq.submit("confirm_then_read", {}, submitter="ada")
    second = exq.submit("steps", {"n": 1}, submitter="ada")
    wait_until(lambda: exq.question(first.id), what="the first experiment's question")
    exq.hold()
    assert exq.is_held()
    assert exq.get(first.id).state == ExperimentState.paused  # started, asking the operator
    exq.answer(first.id, True)
    assert exq.wait_for(first.id).state == ExperimentState.completed
    assert w.worker.claim() is None  # held: nothing is claimed
    assert exq.get(second.id).state == ExperimentState.queued
    exq.release()
    assert exq.wait_for(second.id).state == ExperimentState.completed


def test_approval_gate(tmp_path, prefect_api, start_worker):
    lab = load_lab(write_lab(tmp_path, approval={"plans": ["boom"]}), speed=1000)
    with ExperimentQueue(lab, api_url=prefect_api) as q:
        gated = q.submit("boom", {}, submitter="gus", role="researcher")
        approved_later = q.submit("boom", {}, submitter="ada", role="researcher")
        free = q.submit("steps", {"n": 1}, submitter="ada", role="researcher")
        own = q.submit("steps", {"n": 1}, submitter="mia", role="manager")
        assert gated.state == ExperimentState.waiting_for_approval
        assert approved_later.state == ExperimentState.waiting_for_approval
        assert free.state == own.state == ExperimentState.queued
        w = start_worker(lab)
        assert q.wait_for(free.id).state == ExperimentState.completed
        assert q.wait_for(own.id).state == ExperimentState.completed
        assert w.worker.claim() is None  # the gated ones are not claimable
        assert q.get(gated.id).state == ExperimentState.waiting_for_approval
        q.reject(gated.id, by="mia", reason="not today")
        q.approve(approved_later.id, by="mia")
        assert q.wait_for(approved_later.id).state == ExperimentState.failed  # boom raises
        assert q.get(gated.id).state == ExperimentState.cancelled
        with pytest.raises(ExperimentStateError):
            q.approve(approved_later.id, by="mia")
    lab.close()


def test_approval_by_role():
    rules = SimpleNamespace(plans=SimpleNamespace(approval={"roles": ["researcher"]}))
    assert needs_approval(rules, "steps", "researcher")
    assert not needs_approval(rules, "steps", "manager")
    assert not needs_approval(rules, "steps", "admin")


def test_operator_confirmation(exq, lab, start_worker):
    w = start_worker(lab)
    exp = exq.submit("confirm_then_read", {"prompt": "load tray 2, then confirm"}, submitter="ada")
    nxt = exq.submit("steps", {"n": 1}, submitter="ada")
    asking = exq.wait_for(exp.id, [ExperimentState.paused])
    assert asking.state_name == "AwaitingOperator" and "load tray 2" in asking.message
    question = wait_until(lambda: exq.question(exp.id), what="the question")
    assert question.prompt == "load tray 2, then confirm" and question.kind == "value"
    assert exq.get(nxt.id).state == ExperimentState.queued  # the lab is held by the question
    exq.answer(exp.id, "tray 2 loaded")
    assert exq.wait_for(exp.id).state == ExperimentState.completed
    (start,) = w.docs("start", exp.id)
    assert start["operator_answer"] == "tray 2 loaded"
    assert exq.wait_for(nxt.id).state == ExperimentState.completed


def test_two_workers_never_run_the_same_experiment(exq, lab_file, prefect_api, start_worker):
    labs = [load_lab(lab_file, speed=1000) for _ in range(2)]
    exq.hold()
    exps = [exq.submit("steps", {"n": 1, "step_s": 0}, submitter="ada") for _ in range(12)]
    workers = [start_worker(x) for x in labs]
    exq.release()
    ends = [exq.wait_for(e.id, timeout=120) for e in exps]
    assert all(e.state == ExperimentState.completed for e in ends)
    for e in ends:
        starts = [d for w in workers for d in w.docs("start", e.id)]
        assert len(starts) == 1, f"experiment {e.id} ran {len(starts)} times"
    ran_by = {e.worker for e in ends}
    assert ran_by <= {w.worker.id for w in workers}
    for x in labs:
        x.close()


def test_stale_claim_on_a_finished_run_is_let_go(exq, lab_file, prefect_api, start_worker):
    """Prefect accepts Completed → Pending (a re-run); a worker holding an old view of the
    queue must not run a finished experiment again."""
    from remotelab.worker import LabWorker

    late_lab = load_lab(lab_file, speed=1000)
    late = LabWorker(late_lab, api_url=prefect_api)
    late.start()
    try:
        exq.hold()
        exp = exq.submit("steps", {"n": 1}, submitter="ada")
        late.claimer.held.keep(False)  # its view: not held
        stale_view = late.candidates()
        assert [str(r.id) for r in stale_view] == [exp.id]
        w = start_worker(load_lab(lab_file, speed=1000))
        exq.release()
        done = exq.wait_for(exp.id)
        assert done.state == ExperimentState.completed
        late.claimer.queue.keep(stale_view)
        assert late.claim() is None
        again = exq.get(exp.id)
        assert again.state == ExperimentState.completed and again.message == done.message
        assert len(w.docs("start", exp.id)) == 1
    finally:
        late.close()
        late_lab.close()
