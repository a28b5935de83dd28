"""The shared commands on data, live and stored: ``watch``, ``runs``, ``export``, ``plot`` and
``verify``, through a gateway or on this machine (see :mod:`remotelab.cli.commands`)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from remotelab.cli import render
from remotelab.cli.app import app, console, user_errors
from remotelab.cli.backend import open_backend
from remotelab.cli.target import JSON, LAB, LOCAL, TOKEN, URL

STORE = Annotated[
    Path | None,
    typer.Option(
        "--store", help="On this machine: run store file; default: runs.sqlite in the data dir."
    ),
]


class ExportFormat(StrEnum):
    """The formats of ``export``."""

    csv = "csv"
    json = "json"
    hdf5 = "hdf5"


# -- live -------------------------------------------------------------------------------------
@app.command("watch")
def watch(
    experiment_id: Annotated[
        str | None,
        typer.Argument(help="Only this experiment (ends when it ends); on this machine: needed."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Through a gateway: stop after this many seconds. On this machine: give up "
            "if the experiment has not started after this many seconds."
        ),
    ] = None,
    stream: Annotated[
        str | None,
        typer.Option(
            help="On this machine: the stream proxy's out address (REMOTELAB_STREAM_OUT)."
        ),
    ] = None,
    rows: Annotated[
        int | None,
        typer.Option(min=1, help="On this machine: how many of the latest events (default 15)."),
    ] = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per update.")] = False,
) -> None:
    """Live documents and status of the lab, or of one experiment until it ends.

    Through a gateway: the lab's, or one experiment's. On this machine: one experiment from the
    stream proxy, a table of its events and a progress bar; exit 0 if its run succeeded."""
    with (
        user_errors(),
        open_backend(url, token, lab, local=local, stream=stream, rows=rows) as side,
    ):
        side.watch(experiment_id, timeout=timeout, as_json=as_json)


# -- data ---------------------------------------------------------------------------------------
@app.command("runs")
def runs(
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="Experiment id (or a unique prefix).")
    ] = None,
    sample: Annotated[str | None, typer.Option("--sample", "-s", help="Sample id.")] = None,
    plan: Annotated[str | None, typer.Option("--plan", "-p", help="Plan name.")] = None,
    submitter: Annotated[
        str | None, typer.Option("--submitter", "-u", help="Who submitted it.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="On this machine: started at or after (ISO 8601, UTC default)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="On this machine: started at or before (ISO 8601, UTC default)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 50,
    store: STORE = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    as_json: JSON = False,
) -> None:
    """Stored runs, newest first, filtered by experiment, sample, plan, submitter (and time)."""
    with (
        user_errors(),
        open_backend(url, token, local=local, since=since, until=until, store=store) as side,
    ):
        side.runs(
            experiment=experiment,
            sample=sample,
            plan=plan,
            submitter=submitter,
            limit=limit,
            as_json=as_json,
        )


@app.command("export")
def export(
    uid: Annotated[
        str, typer.Argument(help="A run uid (or a unique prefix of it), or an experiment id.")
    ],
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="The file format.")] = (
        ExportFormat.csv
    ),
    out: Annotated[
        Path, typer.Option("--output", "--out", "-o", help="Directory to write into.")
    ] = Path("."),
    stream: Annotated[
        str, typer.Option(help="csv/json: the event stream (e.g. primary, endpoint).")
    ] = "primary",
    store: STORE = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
) -> None:
    """Write a run's data to files (an experiment id: each of its runs), the same files and
    names through a gateway and on this machine.

    csv: the stream's scalar signals, and a CSV of each array signal (a spectrum); json: the
    stream's events with the run's metadata; hdf5: the whole run, NeXus style."""
    with user_errors(), open_backend(url, token, local=local, store=store) as side:
        paths = side.export(uid, fmt.value, out, stream=stream)
    for path in paths:
        console.print(str(path), markup=False, highlight=False)


@app.command("plot")
def plot(
    run: Annotated[str, typer.Argument(help="Run uid (or a unique prefix of it).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="PNG file to write.")
    ] = None,
    redraw: Annotated[bool, typer.Option(help="Draw it again even if one is stored.")] = False,
    store: STORE = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
) -> None:
    """Write a run's PNG summary (the one stored at run end, or drawn now)."""
    with user_errors(), open_backend(url, token, local=local, store=store) as side:
        path = side.plot(run, output, redraw=redraw)
    console.print(str(path), markup=False, highlight=False)


@app.command("verify")
def verify(
    run: Annotated[str, typer.Argument(help="Run uid (or a unique prefix of it).")],
    store: STORE = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    as_json: JSON = False,
) -> None:
    """Check that a stored run still matches the content hash recorded when it ended (exit 1
    if it does not)."""
    with user_errors(), open_backend(url, token, local=local, store=store) as side:
        result = side.verify(run)
    if as_json:
        render.dump(result)
    else:
        render.verification(result)
    if not result["ok"]:
        raise typer.Exit(1)
