"""Editing a waiting experiment against everything else that may happen to it meanwhile: a
failed edit changes nothing, a held run is refused to moves and to other edits, an approval or
a claim during an edit of an experiment awaiting approval, a hold its editor left behind.

Each race is injected at a fixed point (a Prefect call wrapped to let another actor act first),
never left to timing."""

from __future__ import annotations

from uuid import UUID

import pytest
from prefect.client.schemas.objects import StateType
from queue_helpers import wait_until, write_lab

from remotelab.errors import ExperimentStateError, QueueError
from remotelab.lab import load_lab
from remotelab.queue import ExperimentQueue, ExperimentState, Priority, signatures
from remotelab.worker import LabWorker

MEASURE = {"detectors": ["thermometer"], "num": 2}


def hold_for_edit(q: ExperimentQueue, exp_id: str, by: str = "ada"):
    """Take an edit's hold on a queued experiment, as an edit does first."""
    return q._hold_for_edit(q.client.read_flow_run(UUID(exp_id)), by)


def state_types(q: ExperimentQueue, exp_id: str) -> list[StateType]:
    states = sorted(q.client.read_flow_run_states(UUID(exp_id)), key=lambda st: st.timestamp)
    return [st.type for st in states]


@pytest.fixture
def approval_lab(tmp_path):
    lab = load_lab(write_lab(tmp_path, approval={"roles": ["researcher"]}), speed=1000)
    yield lab
    lab.close()


@pytest.fixture
def aq(approval_lab, prefect_api):
    """The queue of a lab where researchers' submissions (and edits) need approval."""
    with ExperimentQueue(approval_lab, api_url=prefect_api) as q:
        q.ensure()
        yield q


def approved(q: ExperimentQueue) -> str:
    exp = q.submit("measure", MEASURE, submitter="ada")
    assert q.approve(exp.id, by="mia").state == ExperimentState.queued
    return exp.id


# -- 1: a failed edit leaves the experiment as it was, approval included --------------------
def test_an_edit_that_fails_in_prefect_leaves_an_approved_experiment_approved(aq, monkeypatch):
    exp_id = approved(aq)

    def down(*args, **kwargs):
        raise RuntimeError("Prefect answered 503")

    monkeypatch.setattr(aq.client, "update_flow_run", down)
    with pytest.raises(RuntimeError, match="503"):
        aq.edit(exp_id, {"num": 3}, by="ada")
    monkeypatch.undo()
    now = aq.get(exp_id)
    assert now.state == ExperimentState.queued and not now.held_for_edit
    assert now.params == MEASURE and now.edits == []
    assert "approval again" not in now.message


def test_an_edit_refused_as_conflicting_leaves_an_approved_experiment_approved(aq, monkeypatch):
    exp_id = approved(aq)
    hold = aq._hold_for_edit

    def manager_edits_first(run, by, **kw):  # mia's edit lands between ada's read and hold
        monkeypatch.setattr(aq, "_hold_for_edit", hold)
        aq.edit(str(run.id), {"num": 7}, by="mia", role="manager")
        return hold(aq.client.read_flow_run(run.id), by, **kw)

    monkeypatch.setattr(aq, "_hold_for_edit", manager_edits_first)
    with pytest.raises(ExperimentStateError, match="edited by someone else meanwhile"):
        aq.edit(exp_id, {"num": 3}, by="ada")
    now = aq.get(exp_id)
    assert now.state == ExperimentState.queued  # not sent back to wait for approval
    assert now.params["num"] == 7 and [e["by"] for e in now.edits] == ["mia"]


# -- 2: moves and priority changes do not break an edit's hold -------------------------------
def test_a_run_held_by_an_edit_cannot_be_moved_or_reprioritised(exq):
    a = exq.submit("measure", MEASURE, submitter="ada")
    b = exq.submit("measure", MEASURE, submitter="ada")
    hold = hold_for_edit(exq, a.id)
    with pytest.raises(ExperimentStateError, match=f"experiment {a.id} is being edited; retry"):
        exq.move(a.id, to="back")
    with pytest.raises(ExperimentStateError, match="is being edited; retry"):
        exq.move(a.id, behind=b.id)
    with pytest.raises(ExperimentStateError, match="is being edited; retry"):
        exq.prioritise(a.id, Priority.urgent)
    held = exq.get(a.id)
    assert held.held_for_edit and held.priority == Priority.normal
    assert state_types(exq, a.id)[-1] == StateType.PENDING  # the hold still stands
    assert exq._release_edit(a.id, hold, "ada", reapprove=False)
    now = exq.get(a.id)
    assert now.state == ExperimentState.queued and not now.message.startswith("[editing]")
    assert now.scheduled == a.scheduled


def test_an_edit_holding_the_run_between_a_moves_read_and_its_change_keeps_its_hold(
    exq, monkeypatch
):
    a = exq.submit("measure", MEASURE, submitter="ada")
    b = exq.submit("measure", MEASURE, submitter="ada")
    set_state = exq.client.set_flow_run_state
    holds, calls = [], []

    def edit_holds_first(run_id, state, **kwargs):
        calls.append(state)
        if len(calls) == 1:  # the move's first change of the run: the edit's hold lands first
            holds.append(hold_for_edit(exq, str(run_id)))
        return set_state(run_id, state, **kwargs)

    monkeypatch.setattr(exq.client, "set_flow_run_state", edit_holds_first)
    with pytest.raises(ExperimentStateError, match=f"experiment {b.id} is being edited; retry"):
        exq.move(b.id, to="front")
    monkeypatch.undo()
    (hold,) = holds
    held = exq.get(b.id)
    assert held.held_for_edit and held.message == hold.mark
    assert held.priority == Priority.normal and held.scheduled == b.scheduled
    assert exq._release_edit(b.id, hold, "ada", reapprove=False)  # the edit lets go as usual
    assert [e.id for e in exq.waiting()] == [a.id, b.id]


def test_moving_another_experiment_past_a_held_one_leaves_the_hold(exq):
    a = exq.submit("measure", MEASURE, submitter="ada")
    b = exq.submit("measure", MEASURE, submitter="ada")
    hold = hold_for_edit(exq, a.id)
    exq.move(b.id, to="front")
    assert exq.get(a.id).held_for_edit
    assert [e.id for e in exq.waiting()] == [b.id, a.id]
    assert exq._release_edit(a.id, hold, "ada", reapprove=False)
    assert [e.id for e in exq.waiting()] == [b.id, a.id]


# -- 3: an experiment awaiting approval, approved (and claimed) during its edit --------------
def test_an_approval_during_the_edit_of_an_awaiting_experiment_refuses_the_edit(aq, monkeypatch):
    exp = aq.submit("measure", MEASURE, submitter="ada")
    update = aq.client.update_flow_run

    def approve_first(run_id, **kwargs):
        monkeypatch.setattr(aq.client, "update_flow_run", update)
        aq.approve(str(run_id), by="mia")
        return update(run_id, **kwargs)

    monkeypatch.setattr(aq.client, "update_flow_run", approve_first)
    with pytest.raises(ExperimentStateError, match="became queued while it was edited; nothing"):
        aq.edit(exp.id, {"num": 3}, by="ada")
    now = aq.get(exp.id)
    assert now.state == ExperimentState.queued and not now.held_for_edit
    assert now.params == MEASURE and now.edits == []  # mia approved these, and they run


def test_a_claim_during_the_edit_of_an_awaiting_experiment_runs_the_old_parameters(
    aq, approval_lab, prefect_api, monkeypatch
):
    exp = aq.submit("measure", MEASURE, submitter="ada")
    worker = LabWorker(approval_lab, api_url=prefect_api, poll_interval=60.0)
    worker.start()
    try:
        update = aq.client.update_flow_run
        claimed = []

        def approve_and_claim_first(run_id, **kwargs):
            monkeypatch.setattr(aq.client, "update_flow_run", update)
            aq.approve(str(run_id), by="mia")
            claimed.append(worker.claim())
            return update(run_id, **kwargs)

        monkeypatch.setattr(aq.client, "update_flow_run", approve_and_claim_first)
        with pytest.raises(ExperimentStateError, match="started while it was edited"):
            aq.edit(exp.id, {"num": 3}, by="ada")
        (run,) = claimed
        assert str(run.id) == exp.id
        assert aq.get(exp.id).params == MEASURE and aq.get(exp.id).edits == []
        done = worker.execute(run)
        assert done.params == MEASURE and aq.get(exp.id).state == ExperimentState.completed
    finally:
        worker.close()


def test_an_awaiting_experiment_edited_undisturbed_keeps_waiting(aq):
    exp = aq.submit("measure", MEASURE, submitter="ada")
    edited = aq.edit(exp.id, {"num": 3}, by="ada")
    assert edited.state == ExperimentState.waiting_for_approval and edited.params["num"] == 3


# -- 4: a hold left behind goes back to the queue, never crashed ------------------------------
def test_a_hold_left_behind_is_restored_by_a_serving_worker_and_runs_as_edited(
    exq, lab, start_worker
):
    exq.hold()  # the lab is held: the worker serves but starts nothing yet
    w = start_worker(lab, edit_grace=0.0, edit_check_interval=0.0)
    exp = exq.submit("measure", MEASURE, submitter="ada")
    hold_for_edit(exq, exp.id)  # the editor updates the parameters, then dies holding it
    edits = [{"by": "ada", "role": "researcher", "at": "-", "previous": MEASURE}]
    run = exq.client.read_flow_run(UUID(exp.id))
    edited = {**run.parameters, "params": {**MEASURE, "num": 3}, "edits": edits}
    exq.client.update_flow_run(  # signed, as the queue's edit signs what it writes
        run.id, parameters=signatures.resigned(exq.signer, exq.name, run, edited)
    )
    back = wait_until(
        lambda: (
            (e := exq.get(exp.id)).state == ExperimentState.queued and not e.held_for_edit and e
        ),
        what="the stale hold to be restored",
    )
    assert back.scheduled == exp.scheduled and back.message == exp.message
    exq.release()
    done = exq.wait_for(exp.id)
    assert done.state == ExperimentState.completed
    (start,) = w.docs("start", exp.id)
    assert start["plan_params"]["num"] == 3 and len(w.docs("event", exp.id)) == 3
    assert StateType.CRASHED not in state_types(exq, exp.id)


def test_a_worker_starting_puts_a_stale_hold_back_instead_of_crashing_it(exq, lab, prefect_api):
    exp = exq.submit("measure", MEASURE, submitter="ada")
    hold_for_edit(exq, exp.id)
    w = LabWorker(lab, api_url=prefect_api, poll_interval=60.0, edit_grace=0.0)
    try:
        assert w.start() == []
        now = exq.get(exp.id)
        assert now.state == ExperimentState.queued and not now.held_for_edit
        assert w.run_next().id == exp.id
        assert StateType.CRASHED not in state_types(exq, exp.id)
    finally:
        w.close()


def test_the_release_of_an_edit_is_retried(exq, monkeypatch):
    exp = exq.submit("measure", MEASURE, submitter="ada")
    set_state = exq.client.set_flow_run_state
    failures = []

    def flaky(run_id, state, **kwargs):
        if state.type == StateType.SCHEDULED and not failures:
            failures.append(state)
            raise ConnectionError("Prefect dropped the connection")
        return set_state(run_id, state, **kwargs)

    monkeypatch.setattr(exq.client, "set_flow_run_state", flaky)
    edited = exq.edit(exp.id, {"num": 3}, by="ada")
    assert failures and edited.params["num"] == 3
    assert edited.state == ExperimentState.queued and not edited.held_for_edit


def test_a_hold_whose_history_cannot_be_read_is_let_go(exq, monkeypatch):
    exp = exq.submit("measure", MEASURE, submitter="ada")

    def down(*args, **kwargs):
        raise ConnectionError("Prefect dropped the connection")

    monkeypatch.setattr(exq.client, "read_flow_run_states", down)
    with pytest.raises(ConnectionError):
        exq.edit(exp.id, {"num": 3}, by="ada")
    monkeypatch.undo()
    now = exq.get(exp.id)
    assert now.state == ExperimentState.queued and not now.held_for_edit
    assert now.params == MEASURE and now.scheduled == exp.scheduled


# -- 5: two edits at once ---------------------------------------------------------------------
def test_an_edit_of_a_run_another_edit_holds_is_told_so(exq, monkeypatch):
    exp = exq.submit("measure", MEASURE, submitter="ada")
    hold = hold_for_edit(exq, exp.id, "mia")
    with pytest.raises(ExperimentStateError, match="is being edited by someone else; retry"):
        exq.edit(exp.id, {"num": 3}, by="ada")
    exq._release_edit(exp.id, hold, "mia", reapprove=False)
    take = exq._hold_for_edit

    def other_edit_holds_first(run, by, **kw):  # mia's hold lands between ada's read and hold
        monkeypatch.setattr(exq, "_hold_for_edit", take)
        take(exq.client.read_flow_run(run.id), "mia")
        return take(run, by, **kw)

    monkeypatch.setattr(exq, "_hold_for_edit", other_edit_holds_first)
    with pytest.raises(ExperimentStateError, match="is being edited by someone else; retry"):
        exq.edit(exp.id, {"num": 3}, by="ada")
    assert exq.get(exp.id).params == MEASURE


# -- 6: an empty edit --------------------------------------------------------------------------
def test_an_empty_edit_is_refused(aq):
    exp_id = approved(aq)
    with pytest.raises(QueueError, match="give at least one parameter to change"):
        aq.edit(exp_id, {}, by="ada")
    now = aq.get(exp_id)
    assert now.state == ExperimentState.queued and now.edits == []


# -- 7: a held run is still listed, in its place -----------------------------------------------
def test_a_run_held_by_an_edit_is_listed_as_queued_in_its_place(exq):
    a = exq.submit("measure", MEASURE, submitter="ada")
    b = exq.submit("measure", MEASURE, submitter="ada")
    c = exq.submit("measure", MEASURE, submitter="ada")
    exq.move(c.id, to="front")
    hold_for_edit(exq, c.id, "mia")
    for listed in (exq.waiting(), exq.list([ExperimentState.queued]), exq.list()):
        assert [e.id for e in listed] == [c.id, a.id, b.id]
        assert listed[0].state == ExperimentState.queued
        assert "being edited by mia" in listed[0].message
    assert exq.current() is None
    assert exq.list([ExperimentState.running]) == []
