"""Editing a waiting experiment's parameters: merged, re-validated, recorded, run as edited;
refused once it started; never half-applied when a worker claims it at the same time."""

from __future__ import annotations

from uuid import UUID

import pytest
from queue_helpers import wait_until, write_lab

from remotelab.errors import ExperimentStateError, PlanValidationError
from remotelab.lab import load_lab
from remotelab.queue import ExperimentQueue, ExperimentState
from remotelab.worker import LabWorker

MEASURE = {"detectors": ["thermometer"], "num": 2}
LONG = {"n": 100_000, "step_s": 0.01, "stir": 400}


def hold_for_edit(q: ExperimentQueue, exp_id: str, by: str = "ada"):
    """Take an edit's hold on a queued experiment, as an edit does first."""
    return q._hold_for_edit(q.client.read_flow_run(UUID(exp_id)), by)


def test_an_edited_experiment_keeps_its_place_and_runs_with_the_new_parameters(
    exq, lab, start_worker
):
    first = exq.submit("measure", MEASURE, submitter="ada")
    second = exq.submit("measure", MEASURE, submitter="ada")
    edited = exq.edit(first.id, {"num": 4, "detectors": ["thermometer", "ph_meter"]}, by="ada")
    assert edited.state == ExperimentState.queued and edited.worker is None
    assert edited.params == {"detectors": ["thermometer", "ph_meter"], "num": 4}
    assert edited.scheduled == first.scheduled
    (record,) = edited.edits
    assert record["by"] == "ada" and record["role"] == "researcher"
    assert record["previous"] == MEASURE
    assert [e.id for e in exq.waiting()] == [first.id, second.id]
    w = start_worker(lab)
    assert exq.wait_for(first.id).state == ExperimentState.completed
    (start,) = w.docs("start", first.id)
    assert start["plan_params"] == {"detectors": ["thermometer", "ph_meter"], "num": 4}
    assert start["num_points"] == 4 and len(w.docs("event", first.id)) == 4
    assert start["edits"] == edited.edits
    assert exq.wait_for(second.id).state == ExperimentState.completed
    assert len(w.docs("event", second.id)) == 2


def test_edits_merge_and_a_null_goes_back_to_the_default(exq):
    exp = exq.submit("measure", {**MEASURE, "sample_id": "S001"}, submitter="ada")
    once = exq.edit(exp.id, {"num": 5}, by="ada")
    assert once.params == {**MEASURE, "sample_id": "S001", "num": 5}
    twice = exq.edit(exp.id, {"sample_id": None}, by="mia", role="manager")
    assert twice.params == {"detectors": ["thermometer"], "num": 5}
    assert [e["by"] for e in twice.edits] == ["ada", "mia"]
    assert twice.edits[1]["previous"] == once.params


def test_bad_values_are_refused_naming_the_parameter_and_nothing_changes(exq):
    exp = exq.submit("measure", MEASURE, submitter="ada")
    with pytest.raises(PlanValidationError) as err:
        exq.edit(exp.id, {"num": 0, "detectors": ["heater"]}, by="ada")
    params = [e["param"] for e in err.value.errors]
    assert params == ["num", "detectors"]
    assert "greater than or equal to 1" in err.value.errors[0]["message"]
    with pytest.raises(PlanValidationError, match="unknown parameter"):
        exq.edit(exp.id, {"speed": 3}, by="ada")
    unchanged = exq.get(exp.id)
    assert unchanged.params == MEASURE and unchanged.edits == []
    assert unchanged.state == ExperimentState.queued


def test_running_and_finished_experiments_cannot_be_edited(exq, lab, start_worker):
    finished = exq.submit("measure", MEASURE, submitter="ada")
    exq.cancel(finished.id, by="ada")
    with pytest.raises(ExperimentStateError, match="cancelled; only an experiment that has not"):
        exq.edit(finished.id, {"num": 3}, by="ada")
    w = start_worker(lab)
    running = exq.submit("steps", LONG, submitter="ada")
    wait_until(lambda: w.docs("event", running.id), what="the plan to run")
    with pytest.raises(ExperimentStateError, match="running"):
        exq.edit(running.id, {"n": 3}, by="ada")
    assert exq.get(running.id).params == LONG
    exq.cancel(running.id, by="ada")
    assert exq.wait_for(running.id).state == ExperimentState.cancelled


@pytest.fixture
def idle_worker(lab, prefect_api):
    """A worker that only claims when told to (no loop), with a long poll interval."""
    w = LabWorker(lab, api_url=prefect_api, poll_interval=60.0)
    w.start()
    yield w
    w.close()


def test_a_worker_runs_the_edited_parameters_even_from_a_stale_candidate_list(
    lab, prefect_api, idle_worker
):
    with ExperimentQueue(lab, api_url=prefect_api, notify=False) as q:  # no wake-up message
        exp = q.submit("measure", MEASURE, submitter="ada")
        (candidate,) = [r for r in idle_worker.candidates() if str(r.id) == exp.id]
        assert candidate.parameters["params"]["num"] == 2
        q.edit(exp.id, {"num": 3}, by="ada")
        done = idle_worker.run_next()
        assert done.id == exp.id and done.params["num"] == 3
        assert q.get(exp.id).state == ExperimentState.completed
    assert idle_worker.completed == 1


def test_an_edit_and_a_claim_exclude_each_other(exq, idle_worker):
    exp = exq.submit("measure", MEASURE, submitter="ada")
    # the edit holds the run: a worker's claim is refused meanwhile
    before = hold_for_edit(exq, exp.id)
    assert exq.get(exp.id).state == ExperimentState.queued
    assert idle_worker.claim() is None
    exq._release_edit(exp.id, before, "ada", reapprove=False)
    claimed = idle_worker.claim()
    assert str(claimed.id) == exp.id
    # now the worker holds it: the edit is refused, the parameters stay as they were
    with pytest.raises(ExperimentStateError, match="running"):
        exq.edit(exp.id, {"num": 3}, by="ada")
    assert exq.get(exp.id).params == MEASURE
    done = idle_worker.execute(claimed)
    assert done.params == MEASURE


def test_an_edit_by_a_role_that_needs_approval_waits_for_approval_again(prefect_api, tmp_path):
    lab = load_lab(write_lab(tmp_path, approval={"roles": ["researcher"]}), speed=1000)
    with ExperimentQueue(lab, api_url=prefect_api) as q:
        waiting = q.submit("measure", MEASURE, submitter="ada")
        assert waiting.state == ExperimentState.waiting_for_approval
        edited = q.edit(waiting.id, {"num": 3}, by="ada")
        assert edited.state == ExperimentState.waiting_for_approval
        assert edited.params["num"] == 3
        approved = q.approve(waiting.id, by="mia")
        assert approved.state == ExperimentState.queued and approved.params["num"] == 3
        again = q.edit(waiting.id, {"num": 4}, by="ada")
        assert again.state == ExperimentState.waiting_for_approval
        assert "approval again" in again.message
        by_manager = q.approve(waiting.id, by="mia")
        assert q.edit(by_manager.id, {"num": 5}, by="mia", role="manager").state == (
            ExperimentState.queued
        )
    lab.close()


def test_two_edits_at_once_do_not_lose_one(exq, monkeypatch):
    exp = exq.submit("measure", MEASURE, submitter="ada")
    hold = exq._hold_for_edit

    def another_edit_first(run, by, **kw):  # mia's edit lands between ada's read and hold
        monkeypatch.setattr(exq, "_hold_for_edit", hold)
        exq.edit(str(run.id), {"num": 7}, by="mia", role="manager")
        return hold(exq.client.read_flow_run(run.id), by, **kw)

    monkeypatch.setattr(exq, "_hold_for_edit", another_edit_first)
    with pytest.raises(ExperimentStateError, match="edited by someone else meanwhile"):
        exq.edit(exp.id, {"num": 3}, by="ada")
    now = exq.get(exp.id)
    assert now.params["num"] == 7 and [e["by"] for e in now.edits] == ["mia"]
    assert now.state == ExperimentState.queued


def test_a_worker_starting_during_an_edit_leaves_the_held_run_alone(exq, lab, prefect_api):
    exp = exq.submit("measure", MEASURE, submitter="ada")
    before = hold_for_edit(exq, exp.id)
    w = LabWorker(lab, api_url=prefect_api, poll_interval=60.0)
    try:
        assert w.start() == []  # not taken for a run its dead worker left behind
        assert exq.get(exp.id).held_for_edit  # a young hold is left alone
        exq._release_edit(exp.id, before, "ada", reapprove=False)
        done = w.run_next()
        assert done.id == exp.id and exq.get(exp.id).state == ExperimentState.completed
    finally:
        w.close()
