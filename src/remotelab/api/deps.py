"""The request dependencies of the gateway's routes: the gateway, the caller, the audit record.

>>> @router.post("/labs/{lab}/hold")
... def hold_lab(lab: str, gw: GW, rec: Annotated[AuditRecord, audited("lab.hold")]): ...

Routes import this module, never :mod:`remotelab.api.app`; the app imports the routes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from remotelab.api.auth import AuthStore, Principal, Role
from remotelab.api.errors import error_responses, status_for
from remotelab.api.gateway import Gateway, LabService

#: the error answers every route documents (their body: :class:`remotelab.api.errors`)
ERROR_RESPONSES = error_responses(401, 403, 404, 409, 422, 429, 503)
#: the longest page of a listing, and the farthest offset
MAX_PAGE = 1000
MAX_OFFSET = 10**9

bearer = HTTPBearer(auto_error=False, description="an API token (`remotelab tokens create USER`)")


def get_gateway(request: Request) -> Gateway:
    """The gateway the app serves (``app.state.gateway``)."""
    return request.app.state.gateway


def principal(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    """The caller, from their bearer token (401 if it is missing, unknown or revoked; 429
    while their address is slowed for failing too often: :mod:`remotelab.api.guard`)."""
    token = creds.credentials if creds else None
    return get_gateway(request).guard.authenticate(token, client_address(request))


def client_address(request: Request) -> str:
    """The caller's network address, as the audit log records it."""
    return request.client.host if request.client else ""


#: the caller of a route, and the gateway it reaches
Who = Annotated[Principal, Depends(principal)]
GW = Annotated[Gateway, Depends(get_gateway)]


@dataclass
class AuditRecord:
    """One state-changing request, written to the audit log when it ends (either way)."""

    auth: AuthStore
    who: Principal
    action: str
    client: str
    lab: str = ""
    target: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    status: int = 200

    def write(self, status: int, error: str | None = None) -> None:
        """Record the request with its outcome: ``status`` and, if it failed, ``error``."""
        detail = dict(self.detail)
        if error:
            detail["error"] = error
        self.auth.record(
            actor=self.who.user,
            role=self.who.role.value,
            action=self.action,
            status=status,
            target=self.target,
            lab=self.lab,
            client=self.client,
            detail=detail,
        )


def audited(action: str) -> Any:
    """A dependency recording the request as ``action`` in the audit log, with its outcome."""

    def dependency(
        request: Request, who: Annotated[Principal, Depends(principal)]
    ) -> Iterator[AuditRecord]:
        params = request.path_params
        record = AuditRecord(
            auth=get_gateway(request).auth,
            who=who,
            action=action,
            client=client_address(request),
            lab=str(params.get("lab", "")),
            target=str(
                params.get("experiment_id") or params.get("name") or params.get("token_id") or ""
            ),
        )
        try:
            yield record
        except Exception as exc:
            record.write(status_for(exc), error=str(exc))
            raise
        else:
            record.write(record.status)

    # "function": the row is written before the answer leaves, so a client that has its
    # answer finds the request in the audit log, in the order the requests were handled.
    return Depends(dependency, scope="function")


def registry_role(who: Principal) -> str:
    """The role name the lab's plan rules and approval rules know the caller by."""
    return Role.manager.value if who.role == Role.admin else who.role.value


def served_lab(gw: Gateway, who: Principal, lab: str) -> LabService:
    """The lab ``lab`` if the caller may use it (404 if there is none, 403 if not theirs)."""
    svc = gw.lab(lab)
    who.require(Role.observer, lab)
    return svc


__all__ = [
    "ERROR_RESPONSES",
    "GW",
    "MAX_OFFSET",
    "MAX_PAGE",
    "AuditRecord",
    "Who",
    "audited",
    "bearer",
    "client_address",
    "get_gateway",
    "principal",
    "registry_role",
    "served_lab",
]
