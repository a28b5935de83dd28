"""The gateway's routes under ``/api/v1``: who may call each is checked here, in the open.

Reading (labs, devices, plans, experiments, runs, live updates) needs any role on the lab;
submitting needs ``researcher``; researchers cancel, edit, defer and answer only their own
experiments; approving, reordering, prioritising, cancelling anyone's and lab control need
``manager``; the audit log needs ``manager``; users and tokens need ``admin``.
"""

from __future__ import annotations

import asyncio
import json
import queue as queue_mod
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from remotelab.api import listing
from remotelab.api.app import (
    AuditRecord,
    Gateway,
    LabService,
    audited,
    get_gateway,
    principal,
    registry_role,
)
from remotelab.api.auth import AuditEntry, NewToken, Principal, Role, TokenInfo, User
from remotelab.api.errors import error_responses
from remotelab.api.models import (
    AbortRequest,
    AnswerRequest,
    CancelRequest,
    Control,
    DeviceStatus,
    EditRequest,
    ExperimentPage,
    LabSummary,
    MoveRequest,
    PauseRequest,
    PlanInfo,
    PriorityRequest,
    RunInfo,
    SubmitRequest,
    TokenCreate,
    UserCreate,
    UserUpdate,
    Whoami,
)
from remotelab.errors import (
    PermissionDeniedError,
    RemotelabError,
    RunNotFound,
    UnknownAccountError,
    UnknownPlanError,
)
from remotelab.queue.models import Experiment, ExperimentState, Priority, needs_approval

router = APIRouter(responses=error_responses(401, 403, 404, 409, 422, 503))

Who = Annotated[Principal, Depends(principal)]
GW = Annotated[Gateway, Depends(get_gateway)]
UNFINISHED = [s for s in ExperimentState if not s.finished]
#: the longest page of a listing, and the farthest offset
MAX_PAGE = 1000
MAX_OFFSET = 10**9


def _lab(gw: Gateway, who: Principal, lab: str) -> LabService:
    svc = gw.lab(lab)
    who.require(Role.observer, lab)
    return svc


def _mine(exp: Experiment, who: Principal) -> bool:
    return exp.submitter == who.user


# -- who am I ---------------------------------------------------------------------------------
@router.get("/whoami", response_model=Whoami, tags=["users"])
def whoami(who: Who) -> Whoami:
    """The caller's user, role and labs."""
    return Whoami(user=who.user, role=who.role, labs=list(who.labs), token_id=who.token_id)


# -- labs, devices, plans ---------------------------------------------------------------------
def _summary(svc: LabService, gw: Gateway) -> LabSummary:
    q = svc.queue
    _, waiting = listing.list_experiments(
        q, [ExperimentState.queued, ExperimentState.waiting_for_approval], limit=1
    )
    return LabSummary(
        name=svc.name,
        description=svc.lab.spec.description or "",
        simulated=svc.lab.simulated,
        held=q.is_held(),
        workers=len(q.workers()),
        queued=waiting,
        current=q.current(),
        status=gw.live.lab_status(svc.name),
    )


@router.get("/labs", response_model=list[LabSummary], tags=["labs"])
def list_labs(who: Who, gw: GW) -> list[LabSummary]:
    """The labs the caller may use, with their queue and worker status."""
    return [_summary(s, gw) for n, s in gw.labs.items() if who.may_use(n)]


@router.get("/labs/{lab}", response_model=LabSummary, tags=["labs"])
def show_lab(lab: str, who: Who, gw: GW) -> LabSummary:
    """One lab: held or not, live workers, queue length, the running experiment."""
    return _summary(_lab(gw, who, lab), gw)


@router.get("/labs/{lab}/devices", response_model=list[DeviceStatus], tags=["labs"])
def list_devices(lab: str, who: Who, gw: GW) -> list[DeviceStatus]:
    """The lab's devices: class, role, limits, safe state, and live status."""
    svc = _lab(gw, who, lab)
    online = bool(svc.queue.workers())
    current = svc.queue.current()
    used: set[str] = set()
    if current is not None:
        try:
            used = set(
                svc.registry.validate(  # type: ignore[union-attr]
                    current.plan, current.params, lab=svc.lab, role="manager"
                ).devices
            )
        except RemotelabError:
            used = set()
    out = []
    for name, dev in svc.lab.describe()["devices"].items():
        busy = name in used
        out.append(
            DeviceStatus(
                name=name,
                class_=dev["class"],
                role=dev["role"],
                backend=dev["backend"],
                limits=dev["limits"],
                safe_state=dev["safe_state"],
                online=online,
                busy=busy,
                experiment=current.id if busy and current is not None else None,
            )
        )
    return out


def _plan_info(svc: LabService, who: Principal, described: dict[str, Any]) -> PlanInfo:
    role = registry_role(who)
    allowed = who.role.at_least(Role.researcher) and described["name"] in svc.registry.allowed(  # type: ignore[union-attr]
        role
    )
    return PlanInfo(
        name=described["name"],
        description=described["description"],
        params_schema=described["schema"],
        example=described["example"],
        allowed=allowed,
        needs_approval=allowed and needs_approval(svc.lab, described["name"], role),
    )


@router.get("/labs/{lab}/plans", response_model=list[PlanInfo], tags=["plans"])
def list_plans(lab: str, who: Who, gw: GW) -> list[PlanInfo]:
    """Every plan of the lab with its parameters' JSON Schema, and whether the caller may
    submit it."""
    svc = _lab(gw, who, lab)
    return [_plan_info(svc, who, d) for d in svc.registry.describe()]  # type: ignore[union-attr]


@router.get("/labs/{lab}/plans/{plan}", response_model=PlanInfo, tags=["plans"])
def show_plan(lab: str, plan: str, who: Who, gw: GW) -> PlanInfo:
    """One plan, with the JSON Schema of its parameters."""
    svc = _lab(gw, who, lab)
    for d in svc.registry.describe():  # type: ignore[union-attr]
        if d["name"] == plan:
            return _plan_info(svc, who, d)
    raise UnknownPlanError(
        f"lab {lab} has no plan {plan!r}; it has: {', '.join(svc.registry.names())}"  # type: ignore[union-attr]
    )


# -- experiments ------------------------------------------------------------------------------
@router.get("/labs/{lab}/experiments", response_model=ExperimentPage, tags=["experiments"])
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
    approval); finished ones (ask for their states) newest first. Filters combine."""
    svc = _lab(gw, who, lab)
    items, total = listing.list_experiments(
        svc.queue,
        state or UNFINISHED,
        submitter=submitter,
        plan=plan,
        priority=priority,
        limit=limit,
        offset=offset,
    )
    return ExperimentPage(items=items, total=total, limit=limit, offset=offset)


@router.post(
    "/labs/{lab}/experiments", response_model=Experiment, status_code=201, tags=["experiments"]
)
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
    svc = _lab(gw, who, lab)
    who.require(Role.researcher, lab, action="submitting an experiment")
    rec.detail = {"plan": body.plan, "params": body.params, "priority": body.priority.value}
    if body.priority == Priority.urgent:
        who.require(Role.manager, lab, action="submitting with urgent priority")
    with svc.writes:
        exp = svc.queue.submit(
            body.plan,
            body.params,
            submitter=who.user,
            role=registry_role(who),
            priority=body.priority,
        )
    rec.target, rec.status = exp.id, 201
    return exp


def _experiment(svc: LabService, experiment_id: str) -> Experiment:
    return svc.queue.get(experiment_id)


@router.get(
    "/labs/{lab}/experiments/{experiment_id}", response_model=Experiment, tags=["experiments"]
)
def show_experiment(lab: str, experiment_id: str, who: Who, gw: GW) -> Experiment:
    """One experiment: plan, parameters, submitter, state, times, its runs' uids."""
    return _experiment(_lab(gw, who, lab), experiment_id)


@router.post(
    "/labs/{lab}/experiments/{experiment_id}/cancel",
    response_model=Experiment,
    tags=["experiments"],
)
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
    svc = _lab(gw, who, lab)
    who.require(Role.researcher, lab, action="cancelling an experiment")
    exp = _experiment(svc, experiment_id)
    if not _mine(exp, who):
        who.require(Role.manager, lab, action="cancelling someone else's experiment")
    reason = body.reason if body else ""
    rec.detail = {"reason": reason} if reason else {}
    with svc.writes:
        return svc.queue.cancel(exp.id, by=who.user, reason=reason)


@router.patch(
    "/labs/{lab}/experiments/{experiment_id}",
    response_model=Experiment,
    tags=["experiments"],
)
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
    svc = _lab(gw, who, lab)
    who.require(Role.researcher, lab, action="editing an experiment")
    exp = _experiment(svc, experiment_id)
    if not _mine(exp, who):
        who.require(Role.manager, lab, action="editing someone else's experiment")
    rec.detail = {"params": body.params, "previous": exp.params}
    with svc.writes:
        return svc.queue.edit(exp.id, body.params, by=who.user, role=registry_role(who))


@router.post(
    "/labs/{lab}/experiments/{experiment_id}/move",
    response_model=Experiment,
    tags=["experiments"],
)
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
    svc = _lab(gw, who, lab)
    who.require(Role.researcher, lab, action="moving an experiment")
    exp = _experiment(svc, experiment_id)
    if not (_mine(exp, who) and body.to == "back"):
        who.require(Role.manager, lab, action="reordering the queue")
    rec.detail = body.model_dump(exclude_none=True)
    with svc.writes:
        return svc.queue.move(exp.id, to=body.to, behind=body.behind)


@router.post(
    "/labs/{lab}/experiments/{experiment_id}/priority",
    response_model=Experiment,
    tags=["experiments"],
)
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
    svc = _lab(gw, who, lab)
    who.require(Role.manager, lab, action="changing an experiment's priority")
    rec.detail = {"priority": body.priority.value}
    with svc.writes:
        return svc.queue.prioritise(experiment_id, body.priority)


@router.post(
    "/labs/{lab}/experiments/{experiment_id}/approve",
    response_model=Experiment,
    tags=["experiments"],
)
def approve_experiment(
    lab: str, experiment_id: str, gw: GW, rec: Annotated[AuditRecord, audited("experiment.approve")]
) -> Experiment:
    """Let an experiment that waits for approval join the queue (409 if it does not wait)."""
    who = rec.who
    svc = _lab(gw, who, lab)
    who.require(Role.manager, lab, action="approving an experiment")
    with svc.writes:
        return svc.queue.approve(experiment_id, by=who.user)


@router.post(
    "/labs/{lab}/experiments/{experiment_id}/reject",
    response_model=Experiment,
    tags=["experiments"],
)
def reject_experiment(
    lab: str,
    experiment_id: str,
    gw: GW,
    rec: Annotated[AuditRecord, audited("experiment.reject")],
    body: Annotated[CancelRequest | None, Body()] = None,
) -> Experiment:
    """Refuse an experiment that waits for approval; it ends cancelled."""
    who = rec.who
    svc = _lab(gw, who, lab)
    who.require(Role.manager, lab, action="rejecting an experiment")
    reason = body.reason if body else ""
    rec.detail = {"reason": reason} if reason else {}
    with svc.writes:
        return svc.queue.reject(experiment_id, by=who.user, reason=reason)


@router.post(
    "/labs/{lab}/experiments/{experiment_id}/answer",
    response_model=dict[str, Any],
    tags=["experiments"],
)
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
    svc = _lab(gw, who, lab)
    who.require(Role.researcher, lab, action="answering an operator prompt")
    exp = _experiment(svc, experiment_id)
    if not _mine(exp, who):
        who.require(Role.manager, lab, action="answering for someone else's experiment")
    rec.detail = {"value": body.value}
    return svc.queue.answer(exp.id, body.value)


@router.get(
    "/labs/{lab}/experiments/{experiment_id}/runs",
    response_model=list[RunInfo],
    tags=["experiments", "runs"],
)
def experiment_runs(lab: str, experiment_id: str, who: Who, gw: GW) -> list[RunInfo]:
    """The stored runs an experiment produced, oldest first."""
    svc = _lab(gw, who, lab)
    exp = _experiment(svc, experiment_id)
    store = gw.store
    if store is None:
        return []
    return [_run_info(store, r) for r in reversed(store.runs(experiment_id=exp.id))]


# -- the lab ----------------------------------------------------------------------------------
def _control(
    gw: Gateway, rec: AuditRecord, lab: str, action: str, body: dict[str, Any] | None = None
) -> Control:
    who = rec.who
    svc = _lab(gw, who, lab)
    who.require(Role.manager, lab, action=f"{action} on the lab")
    q = svc.queue
    rec.detail = body or {}
    if action == "hold":
        q.hold()
        return Control(lab=lab, action=action, held=True)
    if action == "release":
        q.release()
        return Control(lab=lab, action=action, held=False)
    if action == "pause":
        answer = q.pause(immediate=bool((body or {}).get("immediate")))
    elif action == "resume":
        answer = q.resume()
    elif action == "stop":
        answer = q.stop()
    else:
        answer = q.abort(reason=str((body or {}).get("reason", "")))
    return Control(lab=lab, action=action, worker=answer)


@router.post("/labs/{lab}/hold", response_model=Control, tags=["lab control"])
def hold_lab(lab: str, gw: GW, rec: Annotated[AuditRecord, audited("lab.hold")]) -> Control:
    """Hold the lab: the running experiment finishes, no further one starts."""
    return _control(gw, rec, lab, "hold")


@router.post("/labs/{lab}/release", response_model=Control, tags=["lab control"])
def release_lab(lab: str, gw: GW, rec: Annotated[AuditRecord, audited("lab.release")]) -> Control:
    """Release a held lab."""
    return _control(gw, rec, lab, "release")


@router.post("/labs/{lab}/pause", response_model=Control, tags=["lab control"])
def pause_lab(
    lab: str,
    gw: GW,
    rec: Annotated[AuditRecord, audited("lab.pause")],
    body: Annotated[PauseRequest | None, Body()] = None,
) -> Control:
    """Pause the running plan (at its next checkpoint, or now); 409 if nothing runs."""
    return _control(gw, rec, lab, "pause", (body or PauseRequest()).model_dump())


@router.post("/labs/{lab}/resume", response_model=Control, tags=["lab control"])
def resume_lab(lab: str, gw: GW, rec: Annotated[AuditRecord, audited("lab.resume")]) -> Control:
    """Resume the paused plan; 409 if nothing is paused."""
    return _control(gw, rec, lab, "resume")


@router.post("/labs/{lab}/stop", response_model=Control, tags=["lab control"])
def stop_lab(lab: str, gw: GW, rec: Annotated[AuditRecord, audited("lab.stop")]) -> Control:
    """End the running plan cleanly (it completes, exit status success)."""
    return _control(gw, rec, lab, "stop")


@router.post("/labs/{lab}/abort", response_model=Control, tags=["lab control"])
def abort_lab(
    lab: str,
    gw: GW,
    rec: Annotated[AuditRecord, audited("lab.abort")],
    body: Annotated[AbortRequest | None, Body()] = None,
) -> Control:
    """Abort the running plan; the lab's devices go to their safe state."""
    return _control(gw, rec, lab, "abort", (body or AbortRequest()).model_dump())


# -- live updates -----------------------------------------------------------------------------
def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


@router.get(
    "/labs/{lab}/events",
    tags=["live"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "an SSE stream"}},
)
async def live_events(
    lab: str,
    who: Who,
    gw: GW,
    experiment: str | None = None,
    heartbeat: Annotated[
        float, Query(gt=0, le=60, description="seconds between keep-alives")
    ] = 15.0,
    timeout: Annotated[
        float | None, Query(gt=0, le=86400, description="end the stream after this many seconds")
    ] = None,
) -> StreamingResponse:
    """Server-Sent Events: the lab's live documents (``event: document``, data
    ``{name, doc}``) and worker status (``event: status``). With ``experiment``, only that
    experiment's: documents already stored are sent first, and the stream ends with
    ``event: end`` (data: the experiment) when it finishes. With ``timeout``, the stream
    ends (``event: timeout``) after that many seconds."""
    svc = await run_in_threadpool(_lab, gw, who, lab)
    exp = None
    if experiment is not None:
        exp = await run_in_threadpool(_experiment, svc, experiment)
    return StreamingResponse(
        _event_stream(gw, svc, exp, heartbeat, timeout),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _event_stream(
    gw: Gateway, svc: LabService, exp: Experiment | None, heartbeat: float, timeout: float | None
) -> AsyncIterator[bytes]:
    deadline = None if timeout is None else time.monotonic() + timeout
    with gw.live.listen(svc.name, exp.id if exp else None) as listener:
        seen: set[tuple[str, str]] = set()
        if exp is not None and gw.store is not None:
            stored = await run_in_threadpool(_stored_documents, gw, exp.id)
            for name, doc in stored:
                if doc.get("uid"):
                    seen.add((name, doc["uid"]))
                yield _sse("document", {"name": name, "doc": doc})
        last_beat, last_check = time.monotonic(), 0.0
        while not gw.closing.is_set():
            try:
                item = listener.box.get_nowait()
            except queue_mod.Empty:
                item = None
            if item is not None:
                data = item["data"]
                doc = data.get("doc", {}) if item["event"] == "document" else {}
                key = (data.get("name", ""), doc.get("uid", ""))
                if not (key[1] and key in seen):
                    yield _sse(item["event"], data)
                continue
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                yield _sse("timeout", {"seconds": timeout})
                return
            if exp is not None and now - last_check >= 0.5:
                last_check = now
                current = await run_in_threadpool(svc.queue.get, exp.id)
                if current.state.finished:
                    await asyncio.sleep(0.2)  # let the last documents through
                    while not listener.box.empty():
                        item = listener.box.get_nowait()
                        yield _sse(item["event"], item["data"])
                    yield _sse("end", current.model_dump(mode="json"))
                    return
            if now - last_beat >= heartbeat:
                last_beat = now
                yield b": keep-alive\n\n"
            await asyncio.sleep(0.05)


def _stored_documents(gw: Gateway, experiment_id: str) -> list[tuple[str, dict[str, Any]]]:
    from remotelab.data.export import _jsonable

    assert gw.store is not None
    out = []
    for run in reversed(gw.store.runs(experiment_id=experiment_id)):
        out.extend((name, _jsonable(doc)) for name, doc in gw.store.documents(run.uid))
    return out


# -- runs -------------------------------------------------------------------------------------
def _run_info(store: Any, r: Any, *, full: bool = False) -> RunInfo:
    info = RunInfo(
        uid=r.uid,
        time=r.time,
        stop_time=r.stop_time,
        experiment_id=r.experiment_id,
        plan_name=r.plan_name,
        submitter=r.submitter,
        lab=r.lab,
        scan_id=r.scan_id,
        exit_status=r.exit_status,
        reason=r.reason,
        num_events=r.num_events or 0,
        content_hash=r.content_hash,
        sample_ids=list(r.sample_ids),
        complete=r.complete,
    )
    if full:
        from remotelab.data.export import _jsonable

        info.streams = store.streams(r.uid)
        info.start = _jsonable(store.start_doc(r.uid))
        stop = store.stop_doc(r.uid)
        info.stop = _jsonable(stop) if stop is not None else None
    return info


def _run(gw: Gateway, who: Principal, uid: str) -> Any:
    store = gw.run_store()
    r = store.run(uid)
    if r.lab and not who.may_use(r.lab):
        raise RunNotFound(f"no run {uid!r} on the labs user {who.user!r} may use")
    return r


@router.get("/runs", response_model=list[RunInfo], tags=["runs"])
def list_runs(
    who: Who,
    gw: GW,
    lab: str | None = None,
    experiment: str | None = None,
    plan: str | None = None,
    submitter: str | None = None,
    sample: str | None = None,
    complete: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[RunInfo]:
    """Stored runs, newest first; filters combine."""
    if gw.store is None:
        return []
    runs = gw.store.runs(
        lab=lab,
        experiment_id=experiment,
        plan_name=plan,
        submitter=submitter,
        sample_id=sample,
        complete=complete,
    )
    runs = [r for r in runs if not r.lab or who.may_use(r.lab)]
    return [_run_info(gw.store, r) for r in runs[offset : offset + limit]]


@router.get("/runs/{uid}", response_model=RunInfo, tags=["runs"])
def show_run(uid: str, who: Who, gw: GW) -> RunInfo:
    """One run's metadata, its start and stop documents and its streams (uid or a unique
    prefix of at least 4 characters)."""
    return _run_info(gw.run_store(), _run(gw, who, uid), full=True)


@router.get(
    "/runs/{uid}/data",
    tags=["runs"],
    responses={
        200: {
            "description": "the run's data",
            "content": {
                "application/json": {},
                "text/csv": {},
                "application/x-hdf5": {},
            },
        }
    },
)
def run_data(
    uid: str,
    who: Who,
    gw: GW,
    format: Literal["json", "csv", "hdf5"] = "json",
    stream: str = "primary",
    key: Annotated[str | None, Query(description="CSV: an array-valued signal's own table")] = None,
) -> Response:
    """A run's data: JSON (metadata and events), CSV (the stream's scalar signals, or one
    array signal with ``key``) or HDF5 (the whole run, NeXus style)."""
    from remotelab.data.export import export_csv, export_hdf5, run_record
    from remotelab.errors import ExportError

    store = gw.run_store()
    r = _run(gw, who, uid)
    if format == "json":
        body = json.dumps(run_record(store, r.uid, stream=stream), allow_nan=False)
        return Response(body, media_type="application/json")
    with tempfile.TemporaryDirectory() as tmp:
        if format == "hdf5":
            path = export_hdf5(store, r.uid, Path(tmp))
            return Response(
                path.read_bytes(),
                media_type="application/x-hdf5",
                headers={"Content-Disposition": f'attachment; filename="{path.name}"'},
            )
        paths = export_csv(store, r.uid, Path(tmp), stream=stream)
        if key is None:
            path = paths[0]
        else:
            found = [p for p in paths[1:] if p.name.endswith(f".{key}.csv")]
            if not found:
                arrays = [p.name.split(".")[-2] for p in paths[1:]]
                raise ExportError(
                    f"run {r.uid} has no array signal {key!r} in stream {stream!r}; "
                    f"its array signals: {', '.join(arrays) or 'none'}"
                )
            path = found[0]
        return Response(
            path.read_text(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{path.name}"'},
        )


@router.get(
    "/runs/{uid}/plot.png",
    tags=["runs"],
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the run's summary plot"}},
)
def run_plot(uid: str, who: Who, gw: GW) -> Response:
    """The run's summary plot (drawn now if the store has none yet)."""
    from remotelab.data.plots import render_run

    store = gw.run_store()
    r = _run(gw, who, uid)
    png = store.plot(r.uid)
    if png is None:
        png = render_run(store, r.uid)
    return Response(png, media_type="image/png")


# -- audit ------------------------------------------------------------------------------------
@router.get("/audit", response_model=list[AuditEntry], tags=["audit"])
def read_audit(
    who: Who,
    gw: GW,
    lab: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    since: Annotated[float | None, Query(ge=0, le=1e11, description="epoch seconds")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[AuditEntry]:
    """The audit log, newest first: every state-changing request, who made it, from where,
    and how it ended. Managers see their labs' entries; admins all."""
    who.require(Role.manager, action="reading the audit log")
    if lab is not None:
        who.require(Role.manager, lab, action="reading the audit log")
    labs = None if who.role == Role.admin or not who.labs else who.labs
    return gw.auth.audit(
        lab=lab, labs=labs, actor=actor, action=action, since=since, limit=limit, offset=offset
    )


# -- users and tokens -------------------------------------------------------------------------
@router.get("/users", response_model=list[User], tags=["users"])
def list_users(who: Who, gw: GW) -> list[User]:
    """Every user (admin)."""
    who.require(Role.admin, action="listing users")
    return gw.auth.users()


@router.post("/users", response_model=User, status_code=201, tags=["users"])
def add_user(body: UserCreate, gw: GW, rec: Annotated[AuditRecord, audited("user.add")]) -> User:
    """Add a user (admin); 409 if the name is taken."""
    rec.who.require(Role.admin, action="adding users")
    rec.target, rec.status = body.name, 201
    rec.detail = {"role": body.role.value, "labs": body.labs}
    return gw.auth.add_user(body.name, body.role, labs=body.labs)


@router.patch("/users/{name}", response_model=User, tags=["users"])
def update_user(
    name: str, body: UserUpdate, gw: GW, rec: Annotated[AuditRecord, audited("user.update")]
) -> User:
    """Change a user's role or disable them (admin)."""
    rec.who.require(Role.admin, action="changing users")
    rec.detail = body.model_dump(exclude_none=True, mode="json")
    user = gw.auth.user(name)
    if body.role is not None:
        user = gw.auth.set_role(name, body.role)
    if body.disabled is not None:
        user = gw.auth.set_disabled(name, body.disabled)
    return user


@router.get("/tokens", response_model=list[TokenInfo], tags=["users"])
def list_tokens(who: Who, gw: GW, user: str | None = None) -> list[TokenInfo]:
    """Tokens (never their secrets): every user's for an admin, one's own otherwise."""
    if who.role != Role.admin:
        if user is not None and user != who.user:
            raise PermissionDeniedError("only an admin may list another user's tokens")
        user = who.user
    return gw.auth.tokens(user)


@router.post("/users/{name}/tokens", response_model=NewToken, status_code=201, tags=["users"])
def create_token(
    name: str,
    gw: GW,
    rec: Annotated[AuditRecord, audited("token.create")],
    body: Annotated[TokenCreate | None, Body()] = None,
) -> NewToken:
    """A new token for a user (admin). Its secret is in this answer only."""
    rec.who.require(Role.admin, action="creating tokens")
    token = gw.auth.create_token(name, (body or TokenCreate()).description)
    rec.target, rec.status = token.id, 201
    rec.detail = {"user": name}
    return token


@router.delete("/tokens/{token_id}", response_model=TokenInfo, tags=["users"])
def revoke_token(
    token_id: str, gw: GW, rec: Annotated[AuditRecord, audited("token.revoke")]
) -> TokenInfo:
    """Revoke a token: an admin any, a user their own."""
    who = rec.who
    try:
        info = gw.auth.token(token_id)
    except UnknownAccountError:
        who.require(Role.admin, action="revoking tokens")
        raise
    if info.user != who.user:
        who.require(Role.admin, action="revoking someone else's token")
    return gw.auth.revoke_token(token_id)


__all__ = ["router"]
