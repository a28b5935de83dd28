"""Data commands: ``runs``, ``export``, ``plot``, ``verify``, ``watch`` and ``stream-proxy``."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from remotelab.cli.app import app, console, err_console, user_errors
from remotelab.errors import ExportError, StoreError, StreamError

OUT_DIR_OPTION = typer.Option(Path("."), "--output", "-o", help="Directory to write into.")
PNG_OPTION = typer.Option(None, "--output", "-o", help="PNG file to write.")
STORE_OPTION = typer.Option(
    None, "--store", help="Run store file; default: runs.sqlite in REMOTELAB_DATA_DIR."
)


def _open_store(path: Path | None):
    from remotelab.data import RunStore

    if path is not None and not path.exists():
        raise StoreError(f"no run store at {path}")
    return RunStore(path, plots=False)


def _when(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _parse_time(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise StoreError(
            f"cannot read the time {value!r}; give ISO 8601 or epoch seconds"
        ) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


@app.command("runs")
def list_runs(
    experiment: str | None = typer.Option(None, "--experiment", "-e", help="Experiment id."),
    sample: str | None = typer.Option(None, "--sample", "-s", help="Sample id."),
    plan: str | None = typer.Option(None, "--plan", "-p", help="Plan name."),
    submitter: str | None = typer.Option(None, "--submitter", "-u", help="Who submitted it."),
    since: str | None = typer.Option(None, help="Started at or after (ISO 8601, UTC default)."),
    until: str | None = typer.Option(None, help="Started at or before (ISO 8601, UTC default)."),
    limit: int = typer.Option(50, "--limit", "-n", help="At most this many runs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    store_path: Path | None = STORE_OPTION,
) -> None:
    """List stored runs, newest first, filtered by experiment, sample, plan, submitter, time."""
    with user_errors():
        store = _open_store(store_path)
        try:
            runs = store.runs(
                experiment_id=experiment,
                sample_id=sample,
                plan_name=plan,
                submitter=submitter,
                since=_parse_time(since),
                until=_parse_time(until),
                limit=limit,
            )
        finally:
            store.close()
    if as_json:
        console.print_json(json.dumps([r.to_dict() for r in runs]))
        return
    table = Table(title=f"{len(runs)} run(s)")
    for column in (
        "uid",
        "started (UTC)",
        "experiment",
        "plan",
        "submitter",
        "samples",
        "events",
        "status",
    ):
        table.add_column(column)
    for r in runs:
        colour = {"success": "green", "incomplete": "yellow"}.get(r.status, "red")
        table.add_row(
            r.uid[:8],
            _when(r.time),
            r.experiment_id or "",
            r.plan_name or "",
            r.submitter or "",
            ", ".join(r.sample_ids),
            str(r.num_events or 0),
            f"[{colour}]{r.status}[/]",
        )
    console.print(table)


@app.command("export")
def export(
    run: str = typer.Argument(..., help="Run uid (or a unique prefix of it)."),
    fmt: str = typer.Option("csv", "--format", "-f", help="csv, json or hdf5."),
    out_dir: Path = OUT_DIR_OPTION,
    stream: str = typer.Option("primary", help="Event stream for csv/json."),
    store_path: Path | None = STORE_OPTION,
) -> None:
    """Write a run's data to files: csv or json (one stream), hdf5 (the whole run, NeXus style)."""
    from remotelab.data.export import FORMATS, export_run

    with user_errors():
        if fmt.lower() not in FORMATS:
            raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        store = _open_store(store_path)
        try:
            paths = export_run(store, run, fmt, out_dir, stream=stream)
        finally:
            store.close()
    for path in paths:
        console.print(str(path))


@app.command("plot")
def plot(
    run: str = typer.Argument(..., help="Run uid (or a unique prefix of it)."),
    output: Path | None = PNG_OPTION,
    redraw: bool = typer.Option(False, help="Draw it again even if one is stored."),
    store_path: Path | None = STORE_OPTION,
) -> None:
    """Write a run's PNG summary (the one stored at run end, or drawn now)."""
    from remotelab.data.plots import render_run

    with user_errors():
        store = _open_store(store_path)
        try:
            uid = store.resolve(run)
            png = None if redraw else store.plot(uid)
            if png is None:
                png = render_run(store, uid)
                store.put_plot(uid, png)
        finally:
            store.close()
        path = output or Path(f"run-{uid[:8]}.png")
        path.write_bytes(png)
    console.print(str(path))


@app.command("verify")
def verify(
    run: str = typer.Argument(..., help="Run uid (or a unique prefix of it)."),
    store_path: Path | None = STORE_OPTION,
) -> None:
    """Check that a stored run still matches the content hash recorded when it ended."""
    with user_errors():
        store = _open_store(store_path)
        try:
            result = store.verify(run)
        finally:
            store.close()
    colour = "green" if result.ok else "red"
    console.print(f"[{colour}]{'OK' if result.ok else 'FAILED'}[/] {result.uid}: {result.detail}")
    console.print(f"  recorded sha256 {result.expected or '-'}")
    console.print(f"  computed sha256 {result.actual}")
    if not result.ok:
        raise typer.Exit(1)


@app.command("stream-proxy")
def stream_proxy(
    in_address: str | None = typer.Option(None, "--in", help="Publishers connect here."),
    out_address: str | None = typer.Option(None, "--out", help="Subscribers connect here."),
) -> None:
    """Run the live stream proxy (default addresses from REMOTELAB_STREAM_IN / _OUT)."""
    from remotelab.settings import get_settings
    from remotelab.stream import StreamProxy

    settings = get_settings()
    with user_errors():
        proxy = StreamProxy(in_address or settings.stream_in, out_address or settings.stream_out)
    console.print(
        f"stream proxy: publishers → {proxy.in_address}, subscribers ← {proxy.out_address}"
    )
    with contextlib.suppress(KeyboardInterrupt):
        proxy.run()


# -- watch ---------------------------------------------------------------------------------
class RunView:
    """What ``watch`` shows: the last events of a run as a table, and a progress bar."""

    def __init__(self, experiment_id: str, rows: int = 15):
        self.experiment_id = experiment_id
        self.rows = rows
        self.run_uid: str | None = None
        self.plan_name = ""
        self.descriptors: set[str] = set()
        self.events: list[dict[str, Any]] = []
        self.columns: list[str] = []
        self.state = "waiting for the experiment to start"
        self.exit_status: str | None = None
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = self.progress.add_task("events", total=None)

    # documents and status ---------------------------------------------------------------
    def document(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start" and doc.get("experiment_id") == self.experiment_id:
            if self.run_uid is None or doc["uid"] != self.run_uid:
                self.run_uid, self.events, self.descriptors = doc["uid"], [], set()
            self.plan_name = str(doc.get("plan_name", ""))
            total = doc.get("num_points")
            self.progress.update(self.task, total=total if isinstance(total, int) else None)
            self.state = "running"
        elif self.run_uid is None:
            return
        elif name == "descriptor" and doc.get("run_start") == self.run_uid:
            self.descriptors.add(doc["uid"])
        elif name == "event" and doc.get("descriptor") in self.descriptors:
            self._event(doc)
        elif name == "event_page" and doc.get("descriptor") in self.descriptors:
            from event_model import unpack_event_page

            for event in unpack_event_page(doc):
                self._event(event)
        elif name == "stop" and doc.get("run_start") == self.run_uid:
            self.exit_status = doc.get("exit_status", "success")
            self.state = f"finished: {self.exit_status}"

    def status(self, status: dict[str, Any]) -> None:
        """A worker status: join a run already under way, follow pause/resume."""
        if status.get("experiment_id") != self.experiment_id:
            return
        if self.run_uid is None and status.get("run_uid"):
            self.run_uid = status["run_uid"]
            self.plan_name = str(status.get("plan_name") or "")
        if status.get("run_uid") == self.run_uid:
            self.descriptors.update(status.get("descriptors", []))
            progress = status.get("progress", {})
            if isinstance(progress.get("total"), int):
                self.progress.update(self.task, total=progress["total"])
            if self.exit_status is None:
                self.state = str(status.get("state", "running"))

    def _event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        for key in event.get("data", {}):
            if key not in self.columns:
                self.columns.append(key)
        self.progress.update(self.task, completed=len(self.events))

    # rendering ------------------------------------------------------------------------------
    def render(self) -> Group:
        title = f"experiment {self.experiment_id}"
        if self.run_uid:
            title += f" · run {self.run_uid[:8]} · {self.plan_name}"
        table = Table(title=f"{title} · {self.state}")
        table.add_column("seq", justify="right")
        table.add_column("time (UTC)")
        for column in self.columns:
            table.add_column(column, justify="right")
        for event in self.events[-self.rows :]:
            data = event.get("data", {})
            table.add_row(
                str(event.get("seq_num", "")),
                datetime.fromtimestamp(event.get("time", 0), UTC).strftime("%H:%M:%S.%f")[:-3],
                *(_show(data.get(c)) for c in self.columns),
            )
        return Group(table, self.progress)


def _show(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, np.ndarray):
        if value.size and np.issubdtype(value.dtype, np.number):
            return f"[{'×'.join(map(str, value.shape))}] max {np.nanmax(value):.4g}"
        return f"[{'×'.join(map(str, value.shape))}]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


@app.command("watch")
def watch(
    experiment: str = typer.Argument(..., help="The experiment id to follow."),
    stream: str | None = typer.Option(
        None, "--stream", help="Stream proxy's out address; default REMOTELAB_STREAM_OUT."
    ),
    timeout: float | None = typer.Option(
        None, help="Give up if the experiment has not started after this many seconds."
    ),
    rows: int = typer.Option(15, help="How many of the latest events the table shows."),
) -> None:
    """Show a running experiment live: a table of its events and a progress bar.

    Exits when the run stops (status 0 if it succeeded, 1 otherwise).
    """
    from remotelab.settings import get_settings
    from remotelab.stream import Subscriber

    address = stream or get_settings().stream_out
    view = RunView(experiment, rows=rows)
    with user_errors():
        sub = Subscriber(address)
    started = time.monotonic()
    try:
        with Live(view.render(), console=console, refresh_per_second=8, transient=False) as live:
            while view.exit_status is None:
                message = sub.receive(timeout=0.25)
                if message is not None:
                    if message.kind == "status":
                        view.status(message.doc)
                    else:
                        view.document(message.name, message.doc)
                    live.update(view.render())
                elif (
                    view.run_uid is None
                    and timeout is not None
                    and time.monotonic() - started > timeout
                ):
                    raise StreamError(
                        f"experiment {experiment} did not start within {timeout:g} s "
                        f"(listening on {address})"
                    )
            live.update(view.render())
    except StreamError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        sub.close()
    console.print(f"run {view.run_uid} {view.exit_status}: {len(view.events)} event(s)")
    if view.exit_status != "success":
        raise typer.Exit(1)
