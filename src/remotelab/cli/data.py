"""The data commands on this machine's run store and stream proxy: what ``runs``, ``export``,
``plot``, ``verify`` and ``watch`` do here (see :mod:`remotelab.cli.data_commands`), and the
``stream-proxy`` command."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from remotelab.cli import render
from remotelab.cli.app import app, console, err_console, user_errors
from remotelab.errors import ExportError, RunNotFound, StoreError, StreamError

if TYPE_CHECKING:
    from remotelab.data import RunStore


@contextlib.contextmanager
def _store(path: Path | None) -> Iterator[RunStore]:
    """Open an existing run store for a command; a damaged file is a StoreError, not a crash."""
    from remotelab.data import RunStore
    from remotelab.settings import get_settings

    if path is None:
        path = get_settings().store_path
        if not path.exists():
            raise StoreError(
                f"no run store at {path}: no run has been stored there yet "
                "(set REMOTELAB_DATA_DIR or pass --store FILE)"
            )
    elif not path.exists():
        raise StoreError(f"no run store at {path}")
    elif not path.is_file():
        raise StoreError(f"the run store {path} is not a file")
    store = RunStore(path, plots=False)
    try:
        yield store
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot read the run store {path}: {exc}") from None
    finally:
        store.close()


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


def runs(
    *,
    experiment: str | None,
    sample: str | None,
    plan: str | None,
    submitter: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
    store_path: Path | None,
) -> None:
    """List stored runs, newest first, filtered by experiment, sample, plan, submitter, time."""
    window = _parse_time(since), _parse_time(until)
    with _store(store_path) as store:
        found = store.runs(
            experiment_id=experiment,
            sample_id=sample,
            plan_name=plan,
            submitter=submitter,
            since=window[0],
            until=window[1],
            limit=limit,
        )
    if as_json:
        console.print_json(json.dumps([r.to_dict() for r in found]))
        return
    table = Table(title=f"{len(found)} run(s)")
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
    for r in found:
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


def _experiment(store: RunStore, name: str) -> str:
    """The experiment id ``name`` is, or the one stored experiment whose id starts with it."""
    ids = {r.experiment_id for r in store.runs() if r.experiment_id}
    if name in ids or len(name) < 4:
        return name
    found = sorted(i for i in ids if i.startswith(name))
    if len(found) > 1:
        raise StoreError(f"{name} is the start of {len(found)} experiments' ids: give more of it")
    return found[0] if found else name


def export(
    run: str, fmt: str, out_dir: Path, *, stream: str | None, store_path: Path | None
) -> list[Path]:
    """Write a run's data to files (an experiment id: each of its runs): csv or json (one
    stream), hdf5 (the whole run, NeXus style)."""
    from remotelab.data.export import FORMATS, export_run

    if fmt.lower() not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    with _store(store_path) as store:
        try:
            uids = [store.resolve(run)]
        except RunNotFound:
            uids = [r.uid for r in store.runs(experiment_id=_experiment(store, run))]
            if not uids:
                raise
        paths: list[Path] = []
        for uid in uids:
            paths += export_run(store, uid, fmt, out_dir, stream=stream or "primary")
    return paths


def plot(run: str, output: Path | None, *, redraw: bool, store_path: Path | None) -> Path:
    """Write a run's PNG summary (the one stored at run end, or drawn now); the file."""
    from remotelab.data.export import write_bytes
    from remotelab.data.plots import render_run

    with _store(store_path) as store:
        uid = store.resolve(run)
        png = None if redraw else store.plot(uid)
        if png is None:
            png = render_run(store, uid)
            try:
                store.put_plot(uid, png)
            except sqlite3.DatabaseError as exc:  # e.g. a read-only store: still write it
                err_console.print(
                    f"[yellow]warning:[/] the plot was not kept in the store: {escape(str(exc))}"
                )
    return write_bytes(output or Path(f"run-{uid[:8]}.png"), png)


def verify(run: str, *, store_path: Path | None) -> dict[str, Any]:
    """A stored run checked against the content hash recorded when it ended (``uid``,
    ``ok``, ``expected``, ``actual``, ``detail``)."""
    with _store(store_path) as store:
        return dataclasses.asdict(store.verify(run))


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
        f"stream proxy: publishers → {proxy.in_address}, subscribers ← {proxy.out_address} "
        f"(CurveZMQ, key {proxy.public_key}: clients on other machines allow it as "
        "stream-proxy)",
        markup=False,
        highlight=False,
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
        self.secondary: set[str] = set()  # descriptors of streams but the primary
        self.done = 0  # events of the primary stream (what num_points counts)
        self.events: list[dict[str, Any]] = []
        self.columns: list[str] = []
        self.state = "waiting for the experiment to start"
        self.exit_status: str | None = None
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = self.progress.add_task("events", total=None, count="")

    # documents and status ---------------------------------------------------------------
    def document(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start" and doc.get("experiment_id") == self.experiment_id:
            if self.run_uid is None or doc["uid"] != self.run_uid:
                self.run_uid, self.events, self.descriptors = doc["uid"], [], set()
                self.done = 0
            self.plan_name = str(doc.get("plan_name", ""))
            total = doc.get("num_points")
            self.progress.update(self.task, total=total if isinstance(total, int) else None)
            self._count()
            self.state = "running"
        elif self.run_uid is None:
            return
        elif name == "descriptor" and doc.get("run_start") == self.run_uid:
            self.descriptors.add(doc["uid"])
            if doc.get("name", "primary") != "primary":
                self.secondary.add(doc["uid"])
        elif name == "event" and doc.get("descriptor") in self.descriptors:
            self._event(doc)
        elif name == "event_page" and doc.get("descriptor") in self.descriptors:
            from event_model import unpack_event_page

            for event in unpack_event_page(doc):  # type: ignore[arg-type]  # a decoded dict
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
                self._count()
            if isinstance(progress.get("done"), int) and progress["done"] > self.done:
                self.done = progress["done"]  # joined late: the events before, as counted
                self._count()
            if self.exit_status is None:
                self.state = str(status.get("state", "running"))

    def _event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        for key in event.get("data", {}):
            if key not in self.columns:
                self.columns.append(key)
        if event.get("descriptor") not in self.secondary:
            self.done += 1
            self._count()

    def _count(self) -> None:
        """The bar and its ``done/total`` (or ``n events`` when the plan gives no total)."""
        total = self.progress.tasks[0].total
        shown = {"done": self.done, "total": int(total) if total else None}
        self.progress.update(self.task, completed=self.done, count=render.progress_text(shown))

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


#: ``watch``: seconds to wait for a run's stop document once the queue says it ended
STOP_GRACE = 5.0


def watch(
    experiment: str,
    *,
    stream: str | None,
    timeout: float | None,
    rows: int | None,
    as_json: bool,
    ended: Callable[[], str | None] | None = None,
) -> None:
    """Show a running experiment live from the stream proxy: a table of its events and a
    progress bar (``as_json``: one JSON line per message). Exits when the run stops (status 0
    if it succeeded, 1 otherwise), or, given ``ended`` (the experiment's final state from the
    queue, None while it is not finished; asked about once a second), when the experiment
    ended without a run to see (cancelled or rejected while queued, failed before its run,
    or over before the stream was joined), or ended and its run's stop document has not
    arrived :data:`STOP_GRACE` seconds later (its worker died)."""
    from remotelab.settings import get_settings
    from remotelab.stream import Subscriber

    address = stream or get_settings().stream_out
    view = RunView(experiment, rows=rows or 15)
    with user_errors():
        sub = Subscriber(address)
    started = time.monotonic()
    heard = False
    asked = started
    final: str | None = None
    ended_at: float | None = None
    live = (
        None
        if as_json
        else Live(view.render(), console=console, refresh_per_second=8, transient=False)
    )
    try:
        with live or contextlib.nullcontext():
            while view.exit_status is None:
                message = sub.receive(timeout=0.25)
                if message is not None:
                    heard = True
                    if message.kind == "status":
                        view.status(message.doc)
                    else:
                        view.document(message.name, message.doc)
                    if live is None:
                        _print_json(message, view)
                    else:
                        live.update(view.render())
                if ended is not None and view.exit_status is None and time.monotonic() - asked >= 1:
                    asked = time.monotonic()
                    final = final or ended()
                    if final is not None and view.run_uid is None:
                        break
                    if final is not None:  # its run started: give its stop document a moment
                        ended_at = ended_at or asked
                        if asked - ended_at >= STOP_GRACE:
                            break
                if (
                    message is None
                    and view.run_uid is None
                    and timeout is not None
                    and time.monotonic() - started > timeout
                ):
                    why = (
                        f"listening on {address}"
                        if heard
                        else f"nothing at all arrived from {address}: is the stream proxy "
                        "running there, with a worker publishing to it?"
                    )
                    raise StreamError(
                        f"experiment {experiment} did not start within {timeout:g} s ({why})"
                    )
            if live is not None:
                live.update(view.render())
    except StreamError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        sub.close()
    if final is not None and view.exit_status is None:
        if as_json:
            print(json.dumps({"event": "end", "data": {"id": experiment, "state": final}}))
        elif view.run_uid is None:
            console.print(
                f"experiment {experiment} ended {final} before a run was seen", markup=False
            )
        else:
            console.print(
                f"experiment {experiment} ended {final}; the stop document of run "
                f"{view.run_uid} did not arrive"
            )
        if final != "completed":
            raise typer.Exit(1)
        return
    if as_json:
        end = {"id": experiment, "run_uid": view.run_uid, "exit_status": view.exit_status}
        print(json.dumps({"event": "end", "data": end}))
    else:
        console.print(f"run {view.run_uid} {view.exit_status}: {len(view.events)} event(s)")
    if view.exit_status != "success":
        raise typer.Exit(1)


def _print_json(message: Any, view: RunView) -> None:
    """One stream message of the watched run as a JSON line, as ``watch --json`` prints
    through a gateway: ``{"event": "document", "data": {"name": …, "doc": …}}``."""
    from remotelab.plans.provenance import json_safe

    if message.kind == "status":
        if message.doc.get("experiment_id") != view.experiment_id:
            return
        line = {"event": "status", "data": message.doc}
    else:
        doc = message.doc
        mine = (
            doc.get("uid") == view.run_uid
            or doc.get("run_start") == view.run_uid
            or doc.get("descriptor") in view.descriptors
        )
        if view.run_uid is None or not mine:
            return
        line = {"event": "document", "data": {"name": message.name, "doc": doc}}
    print(json.dumps(json_safe(line), default=str))
