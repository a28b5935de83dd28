"""The audit log (managers: their labs' entries; admins: all)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from remotelab.api.auth import AuditEntry, Role
from remotelab.api.deps import ERROR_RESPONSES, GW, MAX_OFFSET, MAX_PAGE, Who

router = APIRouter(tags=["audit"], responses=ERROR_RESPONSES)


@router.get("/audit", response_model=list[AuditEntry])
def read_audit(
    who: Who,
    gw: GW,
    lab: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    target: Annotated[str | None, Query(description="an experiment id, user, token id")] = None,
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
        lab=lab,
        labs=labs,
        actor=actor,
        action=action,
        target=target,
        since=since,
        limit=limit,
        offset=offset,
    )


__all__ = ["router"]
