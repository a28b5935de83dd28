"""Stored runs: every run's metadata, its data (JSON, CSV, HDF5) and its summary plot.

A run of a lab the caller may not use is not found (404), nor, where the lab shows
experiments to their submitters only (``visibility: own``), a researcher's run of another
user (:func:`remotelab.api.visibility.readable_run`)."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from remotelab.api.deps import (
    ERROR_RESPONSES,
    GW,
    MAX_OFFSET,
    MAX_PAGE,
    AuditRecord,
    Who,
    audited,
)
from remotelab.api.models import RunInfo, RunVerification
from remotelab.api.visibility import own_labs, readable_run, sees_run
from remotelab.data.export import export_csv, export_hdf5, export_json, jsonable
from remotelab.errors import ExportError

router = APIRouter(tags=["runs"], responses=ERROR_RESPONSES)
#: the header of a CSV export that names the stream's array signals (each its own CSV)
ARRAYS_HEADER = "X-Remotelab-Arrays"


def run_info(store: Any, r: Any, *, full: bool = False) -> RunInfo:
    """A stored run's metadata; with ``full``, its streams and start and stop documents."""
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
        info.streams = store.streams(r.uid)
        info.start = jsonable(store.start_doc(r.uid))
        stop = store.stop_doc(r.uid)
        info.stop = jsonable(stop) if stop is not None else None
    return info


@router.get("/runs", response_model=list[RunInfo])
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
    own = own_labs(gw, who)
    runs = [r for r in runs if sees_run(who, r, own)]
    return [run_info(gw.store, r) for r in runs[offset : offset + limit]]


@router.get("/runs/{uid}", response_model=RunInfo)
def show_run(uid: str, who: Who, gw: GW) -> RunInfo:
    """One run's metadata, its start and stop documents and its streams (uid or a unique
    prefix of at least 4 characters)."""
    return run_info(gw.run_store(), readable_run(gw, who, uid), full=True)


def csv_file(paths: list[Path], uid: str, stream: str, key: str | None) -> Path:
    """Of a run's CSV export, the scalar table, or the table of array signal ``key``."""
    if key is None:
        return paths[0]
    found = [p for p in paths[1:] if p.name.endswith(f".{key}.csv")]
    if not found:
        arrays = [p.name.split(".")[-2] for p in paths[1:]]
        raise ExportError(
            f"run {uid} has no array signal {key!r} in stream {stream!r}; "
            f"its array signals: {', '.join(arrays) or 'none'}"
        )
    return found[0]


@router.get(
    "/runs/{uid}/data",
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
    gw: GW,
    rec: Annotated[AuditRecord, audited("run.export")],
    format: Literal["json", "csv", "hdf5"] = "json",
    stream: str = "primary",
    key: Annotated[str | None, Query(description="CSV: an array-valued signal's own table")] = None,
) -> Response:
    """A run's data: JSON (metadata and events), CSV (the stream's scalar signals, or one
    array signal with ``key``) or HDF5 (the whole run, NeXus style), named as ``remotelab
    export`` names its files (``Content-Disposition``). A CSV of the scalar signals lists the
    stream's array signals (each its own CSV, with ``key``) in ``X-Remotelab-Arrays``. Each
    export is in the audit log (``run.export``)."""
    rec.target, rec.detail = uid, {"format": format, "stream": stream, "key": key}
    store = gw.run_store()
    r = readable_run(gw, rec.who, uid)
    rec.target, rec.lab = r.uid, r.lab or ""
    with tempfile.TemporaryDirectory() as tmp:
        headers: dict[str, str] = {}
        if format == "json":
            path, media = export_json(store, r.uid, Path(tmp), stream=stream), "application/json"
        elif format == "hdf5":
            path, media = export_hdf5(store, r.uid, Path(tmp)), "application/x-hdf5"
        else:
            paths = export_csv(store, r.uid, Path(tmp), stream=stream)
            path, media = csv_file(paths, r.uid, stream, key), "text/csv"
            if key is None:
                headers[ARRAYS_HEADER] = ",".join(p.name.split(".")[-2] for p in paths[1:])
        headers["Content-Disposition"] = f'attachment; filename="{path.name}"'
        return Response(path.read_bytes(), media_type=media, headers=headers)


@router.get(
    "/runs/{uid}/plot.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the run's summary plot"}},
)
def run_plot(uid: str, who: Who, gw: GW, redraw: bool = False) -> Response:
    """The run's summary plot (drawn now if the store has none yet, or with ``redraw``)."""
    from remotelab.data.plots import render_run  # matplotlib: loaded when a plot is asked for

    store = gw.run_store()
    r = readable_run(gw, who, uid)
    png = None if redraw else store.plot(r.uid)
    if png is None:
        png = render_run(store, r.uid)
    return Response(png, media_type="image/png")


@router.get("/runs/{uid}/verify", response_model=RunVerification)
def verify_run(uid: str, who: Who, gw: GW) -> RunVerification:
    """Recompute the run's content hash from its stored documents and compare it with the
    hash recorded when it ended (``ok``: they match)."""
    store = gw.run_store()
    r = readable_run(gw, who, uid)
    return RunVerification.model_validate(dataclasses.asdict(store.verify(r.uid)))


__all__ = ["ARRAYS_HEADER", "csv_file", "readable_run", "router", "run_info", "verify_run"]
