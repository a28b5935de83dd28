"""Live updates of a lab as Server-Sent Events: its documents and its worker's status."""

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
from remotelab.data.export import jsonable
from remotelab.queue.models import Experiment

router = APIRouter(tags=["live"], responses=ERROR_RESPONSES)


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent Event; its data as plain JSON (arrays as lists, NaN as null)."""
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
) -> StreamingResponse:
    """Server-Sent Events: the lab's live documents (``event: document``, data
    ``{name, doc}``) and worker status (``event: status``). With ``experiment``, only that
    experiment's: documents already stored are sent first, and the stream ends with
    ``event: end`` (data: the experiment) when it finishes. With ``timeout``, the stream
    ends (``event: timeout``) after that many seconds."""
    svc = await run_in_threadpool(served_lab, gw, who, lab)
    exp = None
    if experiment is not None:
        exp = await run_in_threadpool(svc.queue.get, experiment)
    return StreamingResponse(
        event_stream(gw, svc, exp, heartbeat, timeout),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def event_stream(
    gw: Gateway, svc: LabService, exp: Experiment | None, heartbeat: float, timeout: float | None
) -> AsyncIterator[bytes]:
    """The events of ``svc``'s lab (of ``exp`` only, if given) until the gateway closes,
    ``exp`` finishes or ``timeout`` seconds pass; a keep-alive every ``heartbeat`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with gw.live.listen(svc.name, exp.id if exp else None) as listener:
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
                    yield sse("end", current.model_dump(mode="json"))
                    return
            if now - last_beat >= heartbeat:
                last_beat = now
                yield b": keep-alive\n\n"
            await asyncio.sleep(0.05)


def stored_documents(gw: Gateway, experiment_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every stored document of the experiment's runs, oldest run first, as JSON data."""
    store = gw.run_store()
    out: list[tuple[str, dict[str, Any]]] = []
    for run in reversed(store.runs(experiment_id=experiment_id)):
        out.extend((name, jsonable(doc)) for name, doc in store.documents(run.uid))
    return out


__all__ = ["event_stream", "router", "sse", "stored_documents"]
