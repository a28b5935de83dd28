"""Lab control (managers): hold and release the queue; pause, resume, stop or abort a running
plan: a named experiment's (``/labs/{lab}/experiments/{id}/pause`` …), or the lab's running one
(``/labs/{lab}/pause`` …: 409 naming them when several run; ``abort`` aborts them all). Each
answers a :class:`~remotelab.api.models.Control`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from remotelab.api.auth import Role
from remotelab.api.deps import ERROR_RESPONSES, GW, AuditRecord, audited, served_lab
from remotelab.api.gateway import Gateway
from remotelab.api.models import AbortRequest, Control, PauseRequest
from remotelab.queue import ExperimentQueue

router = APIRouter(tags=["lab control"], responses=ERROR_RESPONSES)


def controlled_queue(
    gw: Gateway, rec: AuditRecord, lab: str, action: str, detail: dict[str, Any] | None = None
) -> ExperimentQueue:
    """The queue of ``lab`` once the caller is known to be its manager; audits ``detail``."""
    who = rec.who
    svc = served_lab(gw, who, lab)
    who.require(Role.manager, lab, action=f"{action} on the lab")
    rec.detail = detail or {}
    return svc.queue


@router.post("/labs/{lab}/hold", response_model=Control)
def hold_lab(lab: str, gw: GW, rec: Annotated[AuditRecord, audited("lab.hold")]) -> Control:
    """Hold the lab: the running experiment finishes, no further one starts."""
    controlled_queue(gw, rec, lab, "hold").hold()
    return Control(lab=lab, action="hold", held=True)


@router.post("/labs/{lab}/release", response_model=Control)
def release_lab(lab: str, gw: GW, rec: Annotated[AuditRecord, audited("lab.release")]) -> Control:
    """Release a held lab."""
    controlled_queue(gw, rec, lab, "release").release()
    return Control(lab=lab, action="release", held=False)


@router.post("/labs/{lab}/pause", response_model=Control)
def pause_lab(
    lab: str,
    gw: GW,
    rec: Annotated[AuditRecord, audited("lab.pause")],
    body: Annotated[PauseRequest | None, Body()] = None,
) -> Control:
    """Pause the running plan (at its next checkpoint, or now); 409 if nothing runs, or if
    several run (the answer lists them: pause one by its experiment's route)."""
    body = body or PauseRequest()
    q = controlled_queue(gw, rec, lab, "pause", body.model_dump())
    return Control(lab=lab, action="pause", worker=q.pause(immediate=body.immediate))


@router.post("/labs/{lab}/resume", response_model=Control)
def resume_lab(lab: str, gw: GW, rec: Annotated[AuditRecord, audited("lab.resume")]) -> Control:
    """Resume the paused plan; 409 if nothing is paused, or several run."""
    q = controlled_queue(gw, rec, lab, "resume")
    return Control(lab=lab, action="resume", worker=q.resume())


@router.post("/labs/{lab}/stop", response_model=Control)
def stop_lab(lab: str, gw: GW, rec: Annotated[AuditRecord, audited("lab.stop")]) -> Control:
    """End the running plan cleanly (it completes, exit status success); 409 if several run."""
    q = controlled_queue(gw, rec, lab, "stop")
    return Control(lab=lab, action="stop", worker=q.stop())


@router.post("/labs/{lab}/abort", response_model=Control)
def abort_lab(
    lab: str,
    gw: GW,
    rec: Annotated[AuditRecord, audited("lab.abort")],
    body: Annotated[AbortRequest | None, Body()] = None,
) -> Control:
    """Abort every running plan; their devices go to their safe state."""
    body = body or AbortRequest()
    q = controlled_queue(gw, rec, lab, "abort", body.model_dump())
    return Control(lab=lab, action="abort", worker=q.abort(reason=body.reason))


# -- one experiment --------------------------------------------------------------------------
EXPERIMENT = "/labs/{lab}/experiments/{experiment_id}"


@router.post(f"{EXPERIMENT}/pause", response_model=Control)
def pause_experiment(
    lab: str,
    experiment_id: str,
    gw: GW,
    rec: Annotated[AuditRecord, audited("experiment.pause")],
    body: Annotated[PauseRequest | None, Body()] = None,
) -> Control:
    """Pause this experiment's plan (at its next checkpoint, or now); the others keep
    running. 409 unless it runs."""
    body = body or PauseRequest()
    q = controlled_queue(gw, rec, lab, "pause", body.model_dump())
    answer = q.pause(immediate=body.immediate, experiment=experiment_id)
    return Control(lab=lab, action="pause", experiment=experiment_id, worker=answer)


@router.post(f"{EXPERIMENT}/resume", response_model=Control)
def resume_experiment(
    lab: str, experiment_id: str, gw: GW, rec: Annotated[AuditRecord, audited("experiment.resume")]
) -> Control:
    """Resume this experiment's paused plan; 409 unless it runs."""
    q = controlled_queue(gw, rec, lab, "resume")
    answer = q.resume(experiment=experiment_id)
    return Control(lab=lab, action="resume", experiment=experiment_id, worker=answer)


@router.post(f"{EXPERIMENT}/stop", response_model=Control)
def stop_experiment(
    lab: str, experiment_id: str, gw: GW, rec: Annotated[AuditRecord, audited("experiment.stop")]
) -> Control:
    """End this experiment's plan cleanly (it completes); 409 unless it runs."""
    q = controlled_queue(gw, rec, lab, "stop")
    answer = q.stop(experiment=experiment_id)
    return Control(lab=lab, action="stop", experiment=experiment_id, worker=answer)


@router.post(f"{EXPERIMENT}/abort", response_model=Control)
def abort_experiment(
    lab: str,
    experiment_id: str,
    gw: GW,
    rec: Annotated[AuditRecord, audited("experiment.abort")],
    body: Annotated[AbortRequest | None, Body()] = None,
) -> Control:
    """Abort this experiment's plan: its own devices go safe, the others' are left alone; it
    ends cancelled. 409 unless it runs."""
    body = body or AbortRequest()
    q = controlled_queue(gw, rec, lab, "abort", body.model_dump())
    answer = q.abort(reason=body.reason, experiment=experiment_id)
    return Control(lab=lab, action="abort", experiment=experiment_id, worker=answer)


__all__ = ["controlled_queue", "router"]
