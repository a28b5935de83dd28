"""Live updates of a lab as Server-Sent Events: its documents and its worker's status.

Where the lab shows experiments to their submitters only (``visibility: own``), a researcher's
or observer's stream carries the documents of their own runs only and each status reduced
to their own experiments (:mod:`remotelab.api.live`); another's experiment answers 404."""

from __future__ import annotations

import asyncio
import json
import queue as queue_mod
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from remotelab.api.deps import ERROR_RESPONSES, GW, Who, served_lab
from remotelab.api.gateway import Gateway, LabService
from remotelab.api.live import RECENT_EVENTS, RECENT_ITEMS
from remotelab.api.visibility import View, visible_experiment
from remotelab.data.export import jsonable
from remotelab.queue.models import Experiment
from remotelab.queue.workers import ACTIVE

router = APIRouter(tags=["live"], responses=ERROR_RESPONSES)


#: how often (s) a live stream checks that its token still authenticates
TOKEN_CHECK = 5.0


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent Event (numpy arrays as lists, NaN as null: what a browser's
    ``JSON.parse`` reads)."""
    return f"event: {event}\ndata: {json.dumps(jsonable(data), default=str)}\n\n".encode()


@router.get(
    "/labs/{lab}/events",
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
    history: Annotated[
        int,
        Query(
            ge=0,
            le=RECENT_ITEMS + RECENT_EVENTS,
            description="first the lab's last N stream items the gateway kept (documents "
            "other than events, worker state changes, the last events), marked replay",
        ),
    ] = 0,
) -> StreamingResponse:
    """Server-Sent Events: the lab's live documents (``event: document``, data
    ``{name, doc}``) and worker status (``event: status``). With ``experiment``, only that
    experiment's: documents already stored are sent first, and the stream ends with
    ``event: end`` (data: the experiment) when it finishes. With ``timeout``, the stream
    ends (``event: timeout``) after that many seconds. With ``history`` (the whole lab's
    stream only), the lab's recent items come first, each with ``replay: true`` and ``at``
    (when the gateway received it)."""
    svc = await run_in_threadpool(served_lab, gw, who, lab)
    exp = None
    if experiment is not None:
        exp = await run_in_threadpool(visible_experiment, svc, who, experiment)
    user = View(svc, who).user
    if user is not None:  # whose the running experiments are, if the hub saw no start of them
        await run_in_threadpool(learn_running, gw, svc)
    return StreamingResponse(
        event_stream(
            gw,
            svc,
            exp,
            heartbeat,
            timeout,
            0 if exp else history,
            token_id=who.token_id,
            user=user,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def event_stream(
    gw: Gateway,
    svc: LabService,
    exp: Experiment | None,
    heartbeat: float,
    timeout: float | None,
    history: int = 0,
    *,
    token_id: str = "",
    user: str | None = None,
) -> AsyncIterator[bytes]:
    """The events of ``svc``'s lab (of ``exp`` only, if given; of ``user``'s experiments
    only, if given) until the gateway closes, ``exp`` finishes, ``timeout`` seconds pass or
    the caller's token ``token_id`` is revoked (or its user disabled: ``event: revoked``,
    checked every :data:`TOKEN_CHECK` s); a keep-alive every ``heartbeat`` seconds; first the
    lab's last ``history`` items."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last_token_check = time.monotonic()
    with gw.live.listen(svc.name, exp.id if exp else None, user) as listener:
        for past in gw.live.recent(svc.name, history, user) if history else []:
            if past["name"] == "status":
                yield sse("status", {**past["doc"], "replay": True, "at": past["at"]})
            else:
                yield sse("document", {**past, "replay": True})
        seen: set[tuple[str, str]] = set()
        if exp is not None and gw.store is not None:
            stored = await run_in_threadpool(stored_documents, gw, exp.id)
            for name, doc in stored:
                if doc.get("uid"):
                    seen.add((name, doc["uid"]))
                yield sse("document", {"name": name, "doc": doc})
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
                    yield sse(item["event"], data)
                continue
            now = time.monotonic()
            if token_id and now - last_token_check >= TOKEN_CHECK:
                last_token_check = now
                if not await run_in_threadpool(gw.auth.token_valid, token_id):
                    yield sse("revoked", {"token": token_id})
                    return
            if deadline is not None and now >= deadline:
                yield sse("timeout", {"seconds": timeout})
                return
            if exp is not None and now - last_check >= 0.5:
                last_check = now
                current = await run_in_threadpool(svc.queue.get, exp.id)
                if current.state.finished:
                    await asyncio.sleep(0.2)  # let the last documents through
                    while not listener.box.empty():
                        item = listener.box.get_nowait()
                        yield sse(item["event"], item["data"])
                    if user is not None:  # its messages name no other user's experiment
                        view = View(svc, user=user)
                        (current,) = await run_in_threadpool(view.experiments, [current])
                    yield sse("end", current.model_dump(mode="json"))
                    return
            if now - last_beat >= heartbeat:
                last_beat = now
                yield b": keep-alive\n\n"
            await asyncio.sleep(0.05)


def learn_running(gw: Gateway, svc: LabService) -> None:
    """Tell the live hub who submitted the lab's running experiments."""
    gw.live.learn({e.id: e.submitter for e in svc.queue.read(ACTIVE)})


def stored_documents(gw: Gateway, experiment_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every stored document of the experiment's runs, oldest run first, as JSON data."""
    store = gw.run_store()
    out: list[tuple[str, dict[str, Any]]] = []
    for run in reversed(store.runs(experiment_id=experiment_id)):
        out.extend((name, jsonable(doc)) for name, doc in store.documents(run.uid))
    return out


__all__ = ["TOKEN_CHECK", "event_stream", "learn_running", "router", "sse", "stored_documents"]
