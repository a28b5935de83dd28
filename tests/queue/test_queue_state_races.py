"""A state change made on a read of the run never overwrites another actor's newer state:
a worker's claim, a run or a cancel that lands between a move's, a release's or a stale-hold
restore's read and its write wins (the experiment never runs twice, a cancelled one never
runs); a hold left by an edit that needed approval again goes back to wait for approval.

Each race is injected at a fixed point (a Prefect call wrapped to let another actor act first),
never left to timing."""

from __future__ import annotations

from uuid import UUID

import pytest
from prefect.client.schemas.objects import StateType
from queue_helpers import wait_until, write_lab

from remotelab.errors import ExperimentStateError
from remotelab.lab import load_lab
from remotelab.queue import ExperimentQueue, ExperimentState
from remotelab.worker import LabWorker

MEASURE = {"detectors": ["thermometer"], "num": 2}


def hold_for_edit(q: ExperimentQueue, exp_id: str, by: str = "ada", **kw):
    return q._hold_for_edit(q.client.read_flow_run(UUID(exp_id)), by, **kw)


@pytest.fixture
def idle_worker(lab, prefect_api):
    """A started worker that serves nothing by itself (the test claims for it)."""
    w = LabWorker(lab, api_url=prefect_api, poll_interval=60.0, edit_check_interval=1e9)
    w.start()
    yield w
    w.close()


@pytest.fixture
def mia(lab, prefect_api):
    """Another user's queue of the same lab (its own Prefect client)."""
    with ExperimentQueue(lab, api_url=prefect_api) as q:
        yield q


def drain(worker: LabWorker) -> list[str]:
    """Claim and run every queued experiment; the ids claimed, in order."""
    ids = []
    while (run := worker.claim()) is not None:
        ids.append(str(run.id))
        worker.execute(run)
    return ids


def stale_worker(lab, api_url: str, edit_grace: float = 0.0) -> LabWorker:
    """A worker that restores edit holds only when the test calls it to."""
    return LabWorker(
        lab,
        api_url=api_url,
        poll_interval=60.0,
        edit_grace=edit_grace,
        edit_check_interval=1e9,
    )


# -- 1: a move never puts an edit's hold back over a worker's claim ------------------------------
def test_a_move_meeting_an_edit_never_overwrites_a_workers_later_claim(
    exq, idle_worker, monkeypatch
):
    a = exq.submit("measure", MEASURE, submitter="ada")
    b = exq.submit("measure", MEASURE, submitter="ada")
    set_state, read_states = exq.client.set_flow_run_state, exq.client.read_flow_run_states
    holds, claims, written = [], [], []

    def edit_holds_first(run_id, state, **kwargs):
        if not written:  # the move's first change of the run: an edit's hold lands first
            written.append(state)
            holds.append(hold_for_edit(exq, str(run_id)))
        return set_state(run_id, state, **kwargs)

    def claim_after_history_read(run_id):
        states = read_states(run_id)
        if len(written) == 1 and holds and not claims:  # the move reads what it did
            claims.append(idle_worker.claim())
        return states

    monkeypatch.setattr(exq.client, "set_flow_run_state", edit_holds_first)
    monkeypatch.setattr(exq.client, "read_flow_run_states", claim_after_history_read)
    with pytest.raises(ExperimentStateError, match=f"experiment {b.id} is being edited; retry"):
        exq.move(b.id, to="front")
    monkeypatch.undo()
    (hold,) = holds
    exq._release_edit(b.id, hold, "ada", reapprove=False)
    ran = drain(idle_worker)  # while any claim made during the move still holds its run
    for run in claims:
        ran.append(str(run.id))
        idle_worker.execute(run)
    assert sorted(ran) == sorted([a.id, b.id])  # each ran once
    assert exq.get(b.id).state == ExperimentState.completed


# -- 2: a claim or a cancel during a move's read of the queue wins ---------------------------------
def test_a_claim_during_a_moves_queue_read_is_not_overwritten(exq, idle_worker, monkeypatch):
    a = exq.submit("measure", MEASURE, submitter="ada")
    b = exq.submit("measure", MEASURE, submitter="ada")
    read_runs = exq.client.read_flow_runs
    claims = []

    def claim_first(*args, **kwargs):
        if not claims:
            claims.append(idle_worker.claim())
        return read_runs(*args, **kwargs)

    monkeypatch.setattr(exq.client, "read_flow_runs", claim_first)
    with pytest.raises(ExperimentStateError, match=f"experiment {a.id} is running"):
        exq.move(a.id, to="back")
    monkeypatch.undo()
    (run,) = claims
    assert str(run.id) == a.id and exq.get(a.id).state == ExperimentState.running
    assert idle_worker.execute(run).state == ExperimentState.completed
    assert drain(idle_worker) == [b.id]  # a ran once


def test_a_cancel_during_a_moves_queue_read_is_not_overwritten(exq, mia, idle_worker, monkeypatch):
    a = exq.submit("measure", MEASURE, submitter="ada")
    b = exq.submit("measure", MEASURE, submitter="ada")
    read_runs = exq.client.read_flow_runs
    cancelled = []

    def cancel_first(*args, **kwargs):
        if not cancelled:
            cancelled.append(mia.cancel(a.id, by="mia"))
        return read_runs(*args, **kwargs)

    monkeypatch.setattr(exq.client, "read_flow_runs", cancel_first)
    with pytest.raises(ExperimentStateError, match=f"experiment {a.id} is cancelled"):
        exq.move(a.id, to="back")
    monkeypatch.undo()
    assert exq.get(a.id).state == ExperimentState.cancelled
    assert drain(idle_worker) == [b.id]


# -- 3: restoring a stale hold never overwrites a cancel or a claim -------------------------------
def test_a_cancel_before_a_stale_holds_restore_stands(exq, mia, lab, prefect_api, monkeypatch):
    exp = exq.submit("measure", MEASURE, submitter="ada")
    w = stale_worker(lab, prefect_api)
    w.start()
    try:
        hold_for_edit(exq, exp.id)  # its editor died holding it
        set_state = w.client.set_flow_run_state
        cancelled = []

        def cancel_first(run_id, state, **kwargs):
            if state.type == StateType.SCHEDULED and not cancelled:
                cancelled.append(mia.cancel(exp.id, by="mia"))
            return set_state(run_id, state, **kwargs)

        monkeypatch.setattr(w.client, "set_flow_run_state", cancel_first)
        assert w.restore_stale_edits() == []
        monkeypatch.undo()
        assert cancelled and exq.get(exp.id).state == ExperimentState.cancelled
        assert w.claim() is None
    finally:
        w.close()


def test_a_stale_holds_restore_leaves_alone_a_run_a_worker_claimed(
    exq, lab, prefect_api, idle_worker, monkeypatch
):
    exp = exq.submit("measure", MEASURE, submitter="ada")
    w = stale_worker(lab, prefect_api)
    w.start()
    try:
        hold = hold_for_edit(exq, exp.id)
        set_state = w.client.set_flow_run_state
        claims = []

        def release_and_claim_first(run_id, state, **kwargs):
            if state.type == StateType.SCHEDULED and not claims:  # the edit ends; a claim
                assert exq._release_edit(exp.id, hold, "ada", reapprove=False)
                claims.append(idle_worker.claim())
            return set_state(run_id, state, **kwargs)

        monkeypatch.setattr(w.client, "set_flow_run_state", release_and_claim_first)
        assert w.restore_stale_edits() == []
        monkeypatch.undo()
        (run,) = claims
        assert str(run.id) == exp.id and exq.get(exp.id).state == ExperimentState.running
        assert w.restore_stale_edits() == []  # a claim is no hold, even with no grace
        assert idle_worker.execute(run).state == ExperimentState.completed
        assert w.claim() is None  # it ran once
    finally:
        w.close()


def test_a_hold_is_timed_on_the_workers_clock_from_when_it_saw_it(exq, lab, prefect_api):
    exp = exq.submit("measure", MEASURE, submitter="ada")
    w = stale_worker(lab, prefect_api, edit_grace=3600.0)
    w.start()
    try:
        hold_for_edit(exq, exp.id)
        assert w.restore_stale_edits() == []  # first seen now: not stale
        (seen,) = w.stale_holds.seen.items()
        w.stale_holds.seen[seen[0]] = seen[1] - 3601.0  # as if first seen an hour ago
        assert [e.id for e in w.restore_stale_edits()] == [exp.id]
        assert not exq.get(exp.id).held_for_edit
    finally:
        w.close()


def test_a_worker_restores_a_stale_hold_while_its_experiment_waits_on_the_operator(
    exq, lab, start_worker
):
    w = start_worker(lab, edit_grace=0.0, edit_check_interval=0.0)
    asks = exq.submit("confirm_then_read", {"prompt": "load tray 2"}, submitter="ada")
    exq.wait_for(asks.id, [ExperimentState.paused])
    exp = exq.submit("measure", MEASURE, submitter="ada")
    hold_for_edit(exq, exp.id)  # its editor dies holding it, while the worker is busy
    back = wait_until(
        lambda: (e := exq.get(exp.id)).state == ExperimentState.queued and not e.held_for_edit,
        what="the stale hold to be restored during the experiment",
    )
    assert back and exq.get(asks.id).state == ExperimentState.paused
    exq.answer(asks.id, "tray 2")
    assert exq.wait_for(asks.id).state == ExperimentState.completed
    assert exq.wait_for(exp.id).state == ExperimentState.completed
    assert len(w.docs("start", exp.id)) == 1


@pytest.fixture
def approval_lab(tmp_path):
    lab = load_lab(write_lab(tmp_path, approval={"roles": ["researcher"]}), speed=1000)
    yield lab
    lab.close()


class Died(BaseException):
    """The editing process dies."""


@pytest.mark.parametrize("dies_after_update", [True, False])
def test_a_stale_hold_of_an_edit_that_needed_approval_again(
    approval_lab, prefect_api, monkeypatch, dies_after_update
):
    with ExperimentQueue(approval_lab, api_url=prefect_api) as aq:
        aq.ensure()
        exp = aq.submit("measure", MEASURE, submitter="ada")
        queued = aq.approve(exp.id, by="mia")
        update = aq.client.update_flow_run

        def update_then_die(*args, **kwargs):
            if dies_after_update:
                update(*args, **kwargs)
            raise Died

        def die(*args, **kwargs):
            raise Died

        monkeypatch.setattr(aq.client, "update_flow_run", update_then_die)
        monkeypatch.setattr(aq, "_release_edit", die)
        with pytest.raises(Died):
            aq.edit(exp.id, {"num": 3}, by="ada")
        monkeypatch.undo()
        assert aq.get(exp.id).held_for_edit
        w = stale_worker(approval_lab, prefect_api)
        try:
            w.start()  # restores stale holds at start-up
            now = aq.get(exp.id)
            if dies_after_update:  # unapproved parameters: back to wait for approval
                assert now.state == ExperimentState.waiting_for_approval
                assert now.params["num"] == 3
                assert w.claim() is None
            else:  # nothing changed: approved, queued in its place
                assert now.state == ExperimentState.queued and now.params == MEASURE
                assert now.scheduled == queued.scheduled
        finally:
            w.close()


# -- 4: a cancel between a release's check and its change stands ----------------------------------
@pytest.mark.parametrize("reapprove", [False, True])
def test_a_cancel_during_the_release_of_an_edit_stands(exq, mia, monkeypatch, reapprove):
    exp = exq.submit("measure", MEASURE, submitter="ada")
    hold = hold_for_edit(exq, exp.id)
    set_state = exq.client.set_flow_run_state
    cancelled = []

    def cancel_first(run_id, state, **kwargs):
        if state.type in (StateType.SCHEDULED, StateType.PAUSED) and not cancelled:
            cancelled.append(True)
            mia.cancel(exp.id, by="mia")
        return set_state(run_id, state, **kwargs)

    monkeypatch.setattr(exq.client, "set_flow_run_state", cancel_first)
    assert not exq._release_edit(exp.id, hold, "ada", reapprove=reapprove)
    monkeypatch.undo()
    assert cancelled and exq.get(exp.id).state == ExperimentState.cancelled


def test_an_edit_that_dies_undoing_its_change_after_an_approval_leaves_it_to_approve(
    approval_lab, prefect_api, monkeypatch
):
    with ExperimentQueue(approval_lab, api_url=prefect_api) as aq:
        aq.ensure()
        exp = aq.submit("measure", MEASURE, submitter="ada")
        update = aq.client.update_flow_run
        calls = []

        def approve_first_then_die_undoing(run_id, **kwargs):
            calls.append(kwargs)
            if len(calls) == 1:  # mia approves the old parameters as ada's edit lands
                aq.approve(str(run_id), by="mia")
                return update(run_id, **kwargs)
            raise Died  # ada's process dies before it undoes its change

        monkeypatch.setattr(aq.client, "update_flow_run", approve_first_then_die_undoing)
        monkeypatch.setattr(aq, "_release_edit", lambda *a, **k: None)  # dead: never lets go
        with pytest.raises(Died):
            aq.edit(exp.id, {"num": 3}, by="ada")
        monkeypatch.undo()
        assert aq.get(exp.id).held_for_edit and aq.get(exp.id).params["num"] == 3
        w = stale_worker(approval_lab, prefect_api)
        try:
            w.start()
            assert aq.get(exp.id).state == ExperimentState.waiting_for_approval
            assert w.claim() is None  # mia never approved num=3
        finally:
            w.close()
