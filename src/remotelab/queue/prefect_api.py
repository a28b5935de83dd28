"""Talking to Prefect: a client for a given API URL, and the lab's pool, queues and deployment.

:func:`ensure_lab` is idempotent: it creates what is missing and leaves the rest alone.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists

from remotelab.errors import QueueError
from remotelab.queue.models import FLOW_NAME, Priority, pool_name
from remotelab.settings import prefect_api_url

#: the work pool type remotelab's pools have (no stock Prefect worker serves it)
POOL_TYPE = "remotelab"

#: the JSON Schema of an experiment's flow run parameters (Prefect checks it on submission)
PARAMETER_SCHEMA: dict[str, Any] = {
    "title": "Parameters",
    "type": "object",
    "properties": {
        "plan": {"title": "plan", "type": "string", "position": 0},
        "params": {"title": "params", "type": "object", "position": 1},
        "submitter": {"title": "submitter", "type": "string", "position": 2},
        "role": {"title": "role", "type": "string", "position": 3},
        "edits": {"title": "edits", "type": "array", "position": 4},
        "devices": {"title": "devices", "type": "array", "position": 5},
        "audit_head": {"title": "audit_head", "type": "string", "position": 6},
    },
    "required": ["plan"],
}


def resolve_api_url(api_url: str | None = None) -> str:
    url = api_url or prefect_api_url()
    if not url:
        raise QueueError(
            "no Prefect API: start one with `remotelab server` and set REMOTELAB_PREFECT_API_URL "
            "(or PREFECT_API_URL), or pass --api"
        )
    return url.rstrip("/")


#: seconds between quick retries of a request Prefect answered 503 (a busy database)
BUSY_RETRY_DELAYS = (0.02, 0.05, 0.1, 0.2)
#: environment variables that route HTTP through a proxy (httpx honours them)
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


class BusyRetryTransport(httpx.HTTPTransport):
    """An HTTP transport that sends a request again, after a few milliseconds, while Prefect
    answers 503 Service Unavailable.

    Prefect's server answers 503 when its database was busy and nothing was written (on
    SQLite, a write that met another one); its client then waits 2 s, 4 s… before trying
    again, which is made for a remote service under load, not a lab's local server. This
    transport tries :data:`BUSY_RETRY_DELAYS` first; a 503 that outlasts them reaches the
    Prefect client, which backs off as before.
    """

    def __init__(self, delays: tuple[float, ...] = BUSY_RETRY_DELAYS, **kwargs: Any):
        super().__init__(retries=3, **kwargs)
        self.delays = delays

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for delay in self.delays:
            response = super().handle_request(request)
            if response.status_code != httpx.codes.SERVICE_UNAVAILABLE:
                return response
            response.close()
            time.sleep(delay)
        return super().handle_request(request)


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says Prefect could not be reached or could not answer (the network,
    a server down or restarting, a 5xx), rather than that it refused what was asked."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, httpx.TransportError | ConnectionError | TimeoutError):
            return True
        if isinstance(error, httpx.HTTPStatusError):
            return error.response.status_code >= 500
        error = error.__cause__ or error.__context__
    return False


def auth_string() -> str | None:
    """The Prefect API's auth string for remotelab's clients: ``PREFECT_API_AUTH_STRING``,
    else ``REMOTELAB_PREFECT_AUTH_STRING``, else the one the embedded server of this
    machine's data directory keeps (``<data dir>/prefect/api_auth_string``), else none."""
    from remotelab.settings import get_settings

    settings = get_settings()
    given = os.environ.get("PREFECT_API_AUTH_STRING") or settings.prefect_auth_string
    if given:
        return given
    kept = settings.data_dir / "prefect" / "api_auth_string"
    try:
        return kept.read_text().strip() or None
    except OSError:
        return None


def connect(api_url: str | None = None) -> SyncPrefectClient:
    """An open synchronous Prefect client for ``api_url`` (default: from the environment).

    Requests go through :class:`BusyRetryTransport`, unless a proxy is configured in the
    environment (then httpx's own transport, which honours it, is left in place)."""
    settings: dict[str, Any] = {}
    if not any(os.environ.get(name) for name in PROXY_VARIABLES):
        settings["transport"] = BusyRetryTransport()
    client = SyncPrefectClient(
        resolve_api_url(api_url),
        auth_string=auth_string(),
        api_key=os.environ.get("PREFECT_API_KEY") or None,
        httpx_settings=settings,
    )
    client.__enter__()
    return client


class ClientPerThread:
    """One Prefect client per thread (a client is not shared across threads); the client of a
    thread that has ended is closed when another thread opens one."""

    def __init__(self, api_url: str | None = None):
        self.api_url = resolve_api_url(api_url)
        self._local = threading.local()
        self._all: dict[threading.Thread, SyncPrefectClient] = {}
        self._lock = threading.Lock()

    def get(self) -> SyncPrefectClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = connect(self.api_url)
            self._local.client = client
            with self._lock:
                ended = [t for t in self._all if not t.is_alive()]
                stale = [self._all.pop(t) for t in ended]
                self._all[threading.current_thread()] = client
            for old in stale:
                _close(old)
        return client

    def close(self) -> None:
        with self._lock:
            clients, self._all = list(self._all.values()), {}
        for client in clients:
            _close(client)


def _close(client: SyncPrefectClient) -> None:
    try:
        client.__exit__(None, None, None)
    except Exception:
        return


def ensure_lab(client: SyncPrefectClient, lab: str) -> UUID:
    """Create the lab's work pool, its priority queues and its deployment if missing.

    Returns the deployment id. Safe to call again and from several processes.
    """
    pool = pool_name(lab)
    with contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(
            WorkPoolCreate(
                name=pool,
                type=POOL_TYPE,
                description=f"remotelab lab {lab}: one experiment at a time, served by "
                "`remotelab worker`. Pause the pool to hold the lab.",
            )
        )
    existing = {q.name for q in client.read_work_queues(work_pool_name=pool)}
    for prio in Priority:
        if prio.value not in existing:
            with contextlib.suppress(ObjectAlreadyExists):
                client.create_work_queue(
                    name=prio.value,
                    work_pool_name=pool,
                    priority=prio.rank,
                    description=f"{prio.value} experiments of lab {lab}",
                )
    flow_id = client.create_flow_from_name(FLOW_NAME)
    return client.create_deployment(
        flow_id=flow_id,
        name=lab,
        work_pool_name=pool,
        work_queue_name=Priority.normal.value,
        parameter_openapi_schema=PARAMETER_SCHEMA,
        enforce_parameter_schema=True,
        description=f"Experiments on lab {lab}; each flow run is one remotelab experiment.",
        tags=["remotelab"],
    )


__all__ = [
    "PARAMETER_SCHEMA",
    "POOL_TYPE",
    "ClientPerThread",
    "connect",
    "ensure_lab",
    "resolve_api_url",
    "unreachable",
]
