"""The audit log (managers: their labs' entries; admins: all)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from remotelab.api.audit_chain import ChainReport
from remotelab.api.auth import AuditEntry, Role
from remotelab.api.deps import ERROR_RESPONSES, GW, MAX_OFFSET, MAX_PAGE, Who
from remotelab.api.models import AuditHead

router = APIRouter(tags=["audit"], responses=ERROR_RESPONSES)


@router.get("/audit", response_model=list[AuditEntry])
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


@router.get("/audit/head", response_model=AuditHead)
def read_audit_head(who: Who, gw: GW) -> AuditHead:
    """The hash of the newest audit row: what each run's provenance records as
    ``audit_head`` when its experiment is accepted (managers)."""
    who.require(Role.manager, action="reading the audit log")
    return AuditHead(head=gw.auth.audit_head())


@router.get("/audit/verify", response_model=ChainReport)
def verify_audit(
    who: Who,
    gw: GW,
    head: Annotated[
        str | None,
        Query(
            pattern="^[0-9a-f]{64}$",
            description="a head hash recorded earlier (a run's audit_head): is it still there?",
        ),
    ] = None,
) -> ChainReport:
    """Walk the whole audit log's hash chain and name the first row that was changed,
    deleted or reordered (managers; the report names rows by number only)."""
    who.require(Role.manager, action="verifying the audit log")
    return gw.auth.verify_audit(expect_head=head)


__all__ = ["router"]
