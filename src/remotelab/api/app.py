"""The gateway's app factory: the routes, error handlers and dashboard on one FastAPI app.

>>> app = create_app(auth=AuthStore(path), labs=[LabService(lab, ExperimentQueue(lab))],
...                  store=RunStore(path), stream="tcp://127.0.0.1:5578")

Prefect's own API stays internal to the lab: the gateway is the only way in from outside,
and every request carries an API token (``Authorization: Bearer rl_…``). What the routes
need from a request (the gateway, the caller, the audit record) is in
:mod:`remotelab.api.deps`; the labs served in :mod:`remotelab.api.gateway`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from remotelab.api.auth import AuthStore
from remotelab.api.bounds import InputBounds
from remotelab.api.dashboard import install_dashboard
from remotelab.api.deps import AuditRecord, audited, get_gateway, principal, registry_role
from remotelab.api.docs_ui import install_docs
from remotelab.api.errors import install_handlers
from remotelab.api.gateway import Gateway, LabService
from remotelab.api.guard import Guard
from remotelab.api.live import LiveHub
from remotelab.api.routes import router
from remotelab.api.watchers import lost_worker_watchers
from remotelab.settings import get_settings
from remotelab.version import __version__

if TYPE_CHECKING:
    from remotelab.data import RunStore
    from remotelab.queue.lost import OnLost

API_PREFIX = "/api/v1"


def create_app(
    *,
    auth: AuthStore,
    labs: Iterable[LabService],
    store: RunStore | None = None,
    stream: str | None = None,
    title: str = "remotelab",
    lost_after: float | None = None,
    on_lost: OnLost | None = None,
    watch_workers: bool = True,
    auth_failures: int | None = None,
) -> FastAPI:
    """The gateway as a FastAPI app.

    ``auth`` holds users, tokens and the audit log; ``labs`` the labs served (each with its
    queue); ``store`` the run store data is read from; ``stream`` the stream proxy's out
    address, relayed to live-update clients (none: no live documents).

    While it serves, the gateway watches each lab's workers (``watch_workers``): one whose
    heartbeat stopped for ``lost_after`` s (default ``REMOTELAB_WORKER_LOST_AFTER``) is
    marked lost, and ``on_lost(announcement, crashed_experiments)`` is called (the
    notification hook; see :mod:`remotelab.queue.lost`).

    ``auth_failures``: failed authentications an address may make in a minute before it is
    answered 429 (default ``REMOTELAB_AUTH_FAILURES``; see :mod:`remotelab.api.guard`).
    """
    limit = get_settings().auth_failures if auth_failures is None else auth_failures
    gateway = Gateway(
        auth=auth,
        labs={s.name: s for s in labs},
        store=store,
        live=LiveHub(stream),
        guard=Guard(auth, limit=limit),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        gateway.live.start()
        watchers = (  # afresh each time the app is served
            lost_worker_watchers(
                gateway.labs.values(), store, lost_after=lost_after, on_lost=on_lost, auth=auth
            )
            if watch_workers
            else []
        )
        for watcher in watchers:
            watcher.start()
        try:
            yield
        finally:
            gateway.closing.set()
            for watcher in watchers:
                watcher.stop()
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
        docs_url=None,  # served from the package below: no CDN
        redoc_url=None,
    )
    app.state.gateway = gateway
    install_handlers(app)
    settings = get_settings()
    app.add_middleware(InputBounds, max_body=settings.max_body, max_depth=settings.max_json_depth)
    app.include_router(router, prefix=API_PREFIX)
    install_dashboard(app)
    install_docs(app)
    return app


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
