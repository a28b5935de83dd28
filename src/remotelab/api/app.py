"""The gateway's app factory, the services it wires together, and its request dependencies.

>>> app = create_app(auth=AuthStore(path), labs=[LabService(lab, ExperimentQueue(lab))],
...                  store=RunStore(path), stream="tcp://127.0.0.1:5578")

Prefect's own API stays internal to the lab: the gateway is the only way in from outside,
and every request carries an API token (``Authorization: Bearer rl_…``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from remotelab.api.auth import AuthStore, Principal, Role
from remotelab.api.errors import install_handlers, status_for
from remotelab.api.live import LiveHub
from remotelab.errors import UnknownLabError
from remotelab.version import __version__

if TYPE_CHECKING:
    from remotelab.data import RunStore
    from remotelab.lab import Lab
    from remotelab.plans.registry import PlanRegistry
    from remotelab.queue import ExperimentQueue

API_PREFIX = "/api/v1"


@dataclass
class LabService:
    """One lab as the gateway serves it: the lab (for validation), its queue and plans."""

    lab: Lab
    queue: ExperimentQueue
    registry: PlanRegistry | None = None
    #: how many requests may change the lab's queue at once (SQLite-backed Prefect servers
    #: answer many concurrent writers slowly and sometimes with errors)
    write_slots: int = 4

    def __post_init__(self) -> None:
        self.writes = threading.BoundedSemaphore(self.write_slots)
        if self.registry is None:
            from remotelab.plans.registry import registry_for

            self.registry = registry_for(self.lab)

    @property
    def name(self) -> str:
        return self.lab.name


@dataclass
class Gateway:
    """What the routes reach through ``request.app.state.gateway``."""

    auth: AuthStore
    labs: dict[str, LabService]
    store: RunStore | None = None
    live: LiveHub = field(default_factory=lambda: LiveHub(None))
    #: set when the server shuts down: live streams end
    closing: threading.Event = field(default_factory=threading.Event)

    def lab(self, name: str) -> LabService:
        if name not in self.labs:
            raise UnknownLabError(
                f"no lab {name!r} here; this gateway serves: {', '.join(self.labs) or 'none'}"
            )
        return self.labs[name]

    def run_store(self) -> RunStore:
        if self.store is None:
            from remotelab.errors import RunNotFound

            raise RunNotFound("this gateway has no run store configured")
        return self.store


def create_app(
    *,
    auth: AuthStore,
    labs: Iterable[LabService],
    store: RunStore | None = None,
    stream: str | None = None,
    title: str = "remotelab",
) -> FastAPI:
    """The gateway as a FastAPI app.

    ``auth`` holds users, tokens and the audit log; ``labs`` the labs served (each with its
    queue); ``store`` the run store data is read from; ``stream`` the stream proxy's out
    address, relayed to live-update clients (none: no live documents).
    """
    from remotelab.api.dashboard import install_dashboard
    from remotelab.api.routes import router

    gateway = Gateway(auth=auth, labs={s.name: s for s in labs}, store=store, live=LiveHub(stream))

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        gateway.live.start()
        try:
            yield
        finally:
            gateway.closing.set()
            gateway.live.close()

    app = FastAPI(
        title=f"{title} gateway",
        version=__version__,
        description=(
            "The remote gateway of a remotelab installation: labs, devices, plans, the "
            "experiment queue, lab control, run data and live updates. Every route needs an "
            "API token (`Authorization: Bearer <token>`); what a token may do depends on its "
            "user's role: observer < researcher < manager < admin."
        ),
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    install_handlers(app)
    app.include_router(router, prefix=API_PREFIX)
    install_dashboard(app)
    return app


# -- dependencies -----------------------------------------------------------------------------
bearer = HTTPBearer(auto_error=False, description="an API token (`remotelab tokens create USER`)")


def get_gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def principal(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    """The caller, from their bearer token (401 if it is missing, unknown or revoked)."""
    return get_gateway(request).auth.authenticate(creds.credentials if creds else None)


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


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


def audited(action: str):
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

    return Depends(dependency)


def registry_role(who: Principal) -> str:
    """The role name the lab's plan rules and approval rules know the caller by."""
    return Role.manager.value if who.role == Role.admin else who.role.value


__all__ = [
    "API_PREFIX",
    "AuditRecord",
    "Gateway",
    "LabService",
    "audited",
    "create_app",
    "get_gateway",
    "principal",
    "registry_role",
]
