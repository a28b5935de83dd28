"""The experiment queue of a lab: list, submit, show, cancel, edit, move, prioritise,
approve, reject, answer an operator prompt; the runs an experiment produced.

Researchers submit and change their own experiments; changing anyone's needs ``manager``.
In a lab whose file says ``visibility: own``, researchers and observers list and reach only
their own experiments; another's answers 404 (:mod:`remotelab.api.visibility`).
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Query

from remotelab.api.auth import Principal, Role
from remotelab.api.deps import (
    ERROR_RESPONSES,
    GW,
    MAX_OFFSET,
    MAX_PAGE,
    AuditRecord,
    Who,
    audited,
    registry_role,
    served_lab,
)
from remotelab.api.models import (
    AnswerRequest,
    CancelRequest,
    EditRequest,
    ExperimentAction,
    ExperimentHistory,
    ExperimentPage,
    MoveRequest,
    PriorityRequest,
    RunInfo,
    StateChange,
    SubmitRequest,
)
from remotelab.api.routes.runs import run_info
from remotelab.api.visibility import View, visible_experiment
from remotelab.queue import listing
from remotelab.queue.models import Experiment, ExperimentState, Priority, held_for_edit, state_of

router = APIRouter(tags=["experiments"], responses=ERROR_RESPONSES)

UNFINISHED = [s for s in ExperimentState if not s.finished]


def mine(exp: Experiment, who: Principal) -> bool:
    """Whether the caller submitted ``exp``."""
    return exp.submitter == who.user


@router.get("/labs/{lab}/experiments", response_model=ExperimentPage)
def list_experiments(
    lab: str,
    who: Who,
    gw: GW,
    state: Annotated[list[ExperimentState] | None, Query()] = None,
    submitter: str | None = None,
    plan: str | None = None,
    priority: Priority | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> ExperimentPage:
    """Experiments of the lab in queue order (running, queued by priority, awaiting
    approval); finished ones (ask for their states) newest first. Filters combine. Where the
    lab shows experiments to their submitters only, a researcher's are theirs."""
    svc = served_lab(gw, who, lab)
    view = View(svc, who)
    if view.user is not None:
        if submitter not in (None, view.user):
            return ExperimentPage(items=[], total=0, limit=limit, offset=offset)
        submitter = view.user
    items, total = listing.list_experiments(
        svc.queue,
        state or UNFINISHED,
        submitter=submitter,
        plan=plan,
        priority=priority,
        limit=limit,
        offset=offset,
    )
    return ExperimentPage(items=view.experiments(items), total=total, limit=limit, offset=offset)


@router.post("/labs/{lab}/experiments", response_model=Experiment, status_code=201)
def submit_experiment(
    lab: str,
    body: SubmitRequest,
    gw: GW,
    rec: Annotated[AuditRecord, audited("experiment.submit")],
) -> Experiment:
    """Queue an experiment. The plan's parameters are validated against the lab first; every
    problem is named (422). Researchers may use the plans the lab allows them and priorities
    normal or low."""
    who = rec.who
    svc = served_lab(gw, who, lab)
    who.require(Role.researcher, lab, action="submitting an experiment")
    rec.detail = {"plan": body.plan, "params": body.params, "priority": body.priority.value}
    if body.priority == Priority.urgent:
        who.require(Role.manager, lab, action="submitting with urgent priority")
    with svc.writes, View(svc, who).hiding():
        exp = svc.queue.submit(
            body.plan,
            body.params,
            submitter=who.user,
            role=registry_role(who),
            priority=body.priority,
            audit_head=gw.auth.audit_head(),
        )
    rec.target, rec.status = exp.id, 201
    return exp


@router.get("/labs/{lab}/experiments/{experiment_id}", response_model=Experiment)
def show_experiment(lab: str, experiment_id: str, who: Who, gw: GW) -> Experiment:
    """One experiment: plan, parameters, devices, submitter, state, times, its runs' uids, and
    why it waits (``waiting_for``) if it does."""
    svc = served_lab(gw, who, lab)
    exp = svc.queue.annotate([visible_experiment(svc, who, experiment_id)])[0]
    return View(svc, who).experiments([exp])[0]


@router.get("/labs/{lab}/experiments/{experiment_id}/history", response_model=ExperimentHistory)
def experiment_history(lab: str, experiment_id: str, who: Who, gw: GW) -> ExperimentHistory:
    """What happened to an experiment: every state it went through (with its message: who
    approved, cancelled or rejected it and why, the question it asked the operator), and the
    audit log's requests about it (submit, edit, approve, reject, answer, move, priority …).
    Refused requests and the callers' addresses are shown to managers only."""
    svc = served_lab(gw, who, lab)
    exp = visible_experiment(svc, who, experiment_id)
    states = []
    for st in svc.queue.prefect.history(UUID(exp.id)):
        kind = ExperimentState.queued if held_for_edit(st) else state_of(st.type.value, st.name)
        states.append(
            StateChange(state=kind, name=st.name or "", at=st.timestamp, message=st.message or "")
        )
    manager = who.role.at_least(Role.manager)
    entries = gw.auth.audit(lab=svc.name, target=exp.id, limit=MAX_PAGE)
    actions = [
        ExperimentAction.model_validate(e.model_dump())
        for e in reversed(entries)
        if manager or e.status < 400
    ]
    return View(svc, who).history(ExperimentHistory(states=states, actions=actions))


@router.post("/labs/{lab}/experiments/{experiment_id}/cancel", response_model=Experiment)
def cancel_experiment(
    lab: str,
    experiment_id: str,
    gw: GW,
    rec: Annotated[AuditRecord, audited("experiment.cancel")],
    body: Annotated[CancelRequest | None, Body()] = None,
) -> Experiment:
    """Cancel an experiment: a waiting one leaves the queue, a running one is aborted with
    the lab's devices left safe. Researchers may cancel their own only; 409 if it ended."""
    who = rec.who
    svc = served_lab(gw, who, lab)
    who.require(Role.researcher, lab, action="cancelling an experiment")
    exp = visible_experiment(svc, who, experiment_id)
    if not mine(exp, who):
        who.require(Role.manager, lab, action="cancelling someone else's experiment")
    reason = body.reason if body else ""
    rec.detail = {"reason": reason} if reason else {}
    with svc.writes:
        return svc.queue.cancel(exp.id, by=who.user, reason=reason)


@router.patch("/labs/{lab}/experiments/{experiment_id}", response_model=Experiment)
def edit_experiment(
    lab: str,
    experiment_id: str,
    body: EditRequest,
    gw: GW,
    rec: Annotated[AuditRecord, audited("experiment.edit")],
) -> Experiment:
    """Change the parameters of an experiment that has not started (queued or waiting for
    approval): given keys replace, null removes, the rest stay; validated like a submission
    (422 naming each bad parameter); 409 once it started or ended. It keeps its place in the
    queue; ``edits`` records the change. Researchers may edit their own only."""
    who = rec.who
    svc = served_lab(gw, who, lab)
    who.require(Role.researcher, lab, action="editing an experiment")
    exp = visible_experiment(svc, who, experiment_id)
    if not mine(exp, who):
        who.require(Role.manager, lab, action="editing someone else's experiment")
    rec.detail = {"params": body.params, "previous": exp.params}
    with svc.writes, View(svc, who).hiding():
        return svc.queue.edit(exp.id, body.params, by=who.user, role=registry_role(who))


@router.post("/labs/{lab}/experiments/{experiment_id}/move", response_model=Experiment)
def move_experiment(
    lab: str,
    experiment_id: str,
    body: MoveRequest,
    gw: GW,
    rec: Annotated[AuditRecord, audited("experiment.move")],
) -> Experiment:
    """Move a queued experiment to the front or back, or behind another one. Managers move
    any; researchers may only defer their own (``to: back``)."""
    who = rec.who
    svc = served_lab(gw, who, lab)
    who.require(Role.researcher, lab, action="moving an experiment")
    exp = visible_experiment(svc, who, experiment_id)
    if not (mine(exp, who) and body.to == "back"):
        who.require(Role.manager, lab, action="reordering the queue")
    rec.detail = body.model_dump(exclude_none=True)
    with svc.writes:
        return svc.queue.move(exp.id, to=body.to, behind=body.behind)


@router.post("/labs/{lab}/experiments/{experiment_id}/priority", response_model=Experiment)
def prioritise_experiment(
    lab: str,
    experiment_id: str,
    body: PriorityRequest,
    gw: GW,
    rec: Annotated[AuditRecord, audited("experiment.prioritise")],
) -> Experiment:
    """Give a queued experiment another priority: it goes to the back of that priority's
    experiments (managers; 409 unless it is queued)."""
    who = rec.who
    svc = served_lab(gw, who, lab)
    who.require(Role.manager, lab, action="changing an experiment's priority")
    rec.detail = {"priority": body.priority.value}
    with svc.writes:
        return svc.queue.prioritise(experiment_id, body.priority)


@router.post("/labs/{lab}/experiments/{experiment_id}/approve", response_model=Experiment)
def approve_experiment(
    lab: str, experiment_id: str, gw: GW, rec: Annotated[AuditRecord, audited("experiment.approve")]
) -> Experiment:
    """Let an experiment that waits for approval join the queue (409 if it does not wait)."""
    who = rec.who
    svc = served_lab(gw, who, lab)
    who.require(Role.manager, lab, action="approving an experiment")
    with svc.writes:
        return svc.queue.approve(experiment_id, by=who.user)


@router.post("/labs/{lab}/experiments/{experiment_id}/reject", response_model=Experiment)
def reject_experiment(
    lab: str,
    experiment_id: str,
    gw: GW,
    rec: Annotated[AuditRecord, audited("experiment.reject")],
    body: Annotated[CancelRequest | None, Body()] = None,
) -> Experiment:
    """Refuse an experiment that waits for approval; it ends cancelled."""
    who = rec.who
    svc = served_lab(gw, who, lab)
    who.require(Role.manager, lab, action="rejecting an experiment")
    reason = body.reason if body else ""
    rec.detail = {"reason": reason} if reason else {}
    with svc.writes:
        return svc.queue.reject(experiment_id, by=who.user, reason=reason)


@router.post("/labs/{lab}/experiments/{experiment_id}/answer", response_model=dict[str, Any])
def answer_experiment(
    lab: str,
    experiment_id: str,
    body: AnswerRequest,
    gw: GW,
    rec: Annotated[AuditRecord, audited("experiment.answer")],
) -> dict[str, Any]:
    """Answer the question the experiment's plan asks the operator (its submitter or a
    manager); 409 if it asks none."""
    who = rec.who
    svc = served_lab(gw, who, lab)
    who.require(Role.researcher, lab, action="answering an operator prompt")
    exp = visible_experiment(svc, who, experiment_id)
    if not mine(exp, who):
        who.require(Role.manager, lab, action="answering for someone else's experiment")
    rec.detail = {"value": body.value}
    return svc.queue.answer(exp.id, body.value)


@router.get(
    "/labs/{lab}/experiments/{experiment_id}/runs",
    response_model=list[RunInfo],
    tags=["runs"],  # and "experiments", the router's
)
def experiment_runs(lab: str, experiment_id: str, who: Who, gw: GW) -> list[RunInfo]:
    """The stored runs an experiment produced, oldest first."""
    exp = visible_experiment(served_lab(gw, who, lab), who, experiment_id)
    store = gw.store
    if store is None:
        return []
    return [run_info(store, r) for r in reversed(store.runs(experiment_id=exp.id))]


__all__ = ["UNFINISHED", "mine", "router"]
