"""The gateway side of the commands: ``remotelab login``, ``whoami``, and what ``submit``,
``queue``, ``show``, ``watch``, ``plans``, ``runs``, ``export``, ``lab``… do through a gateway.

They talk to it through :class:`remotelab.Client`. The gateway and token come from
``--url``/``--token``, else ``REMOTELAB_URL``/``REMOTELAB_TOKEN``, else the config file
written by ``remotelab login`` (``REMOTELAB_CONFIG``, default
``~/.config/remotelab/client.toml``); :mod:`remotelab.cli.target` decides which side a
command works on. Tables for humans; ``--json`` for scripts.
"""

from __future__ import annotations

import json
import os
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import platformdirs
import typer
from rich.table import Table

from remotelab.cli.app import app, console, err_console, user_errors
from remotelab.cli.params import read_params
from remotelab.cli.target import JSON, TOKEN, URL
from remotelab.errors import ApiError

if TYPE_CHECKING:
    from remotelab.client import Client

LAB = Annotated[
    str | None, typer.Option("--lab", "-l", help="The lab; default: the gateway's only lab.")
]


def config_path() -> Path:
    env = os.environ.get("REMOTELAB_CONFIG")
    if env:
        return Path(env)
    return Path(platformdirs.user_config_dir("remotelab", appauthor=False)) / "client.toml"


def read_config() -> dict[str, Any]:
    path = config_path()
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        err_console.print(f"[yellow]warning:[/] ignoring {path}: {exc}")
        return {}


def client(url: str | None, token: str | None, lab: str | None = None):
    """A client from the options, the environment or the config file (in that order).

    The config file's token and lab are used only with the gateway it was saved for: a
    token is never sent to another gateway given by ``--url`` or ``REMOTELAB_URL``."""
    from remotelab.client import Client

    cfg = read_config()
    url = url or os.environ.get("REMOTELAB_URL") or cfg.get("url")
    if url and str(cfg.get("url", "")).rstrip("/") != url.rstrip("/"):
        cfg = {}
    token = token or os.environ.get("REMOTELAB_TOKEN") or cfg.get("token")
    lab = lab or os.environ.get("REMOTELAB_LAB") or cfg.get("lab")
    if not url:
        raise ApiError(0, "no gateway: pass --url, set REMOTELAB_URL or run 'remotelab login'")
    return Client(url, token, lab=lab)


def dump(data: Any) -> None:
    if hasattr(data, "model_dump"):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [d.model_dump(mode="json") if hasattr(d, "model_dump") else d for d in data]
    console.print_json(json.dumps(data, default=str))


def when(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def experiments_table(items: list, title: str) -> Table:
    table = Table(title=title)
    for column in ("id", "plan", "submitter", "priority", "state", "created", "message"):
        table.add_column(column, overflow="fold")
    for e in items:
        table.add_row(
            e.id, e.plan, e.submitter, e.priority.value, e.state.value, when(e.created), e.message
        )
    return table


def show_experiment(exp: Any) -> None:
    table = Table(show_header=False, title=f"experiment {exp.id}")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key in ("plan", "params", "lab", "submitter", "priority", "state", "message"):
        value = getattr(exp, key)
        value = getattr(value, "value", value)
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    for key in ("created", "started", "ended"):
        table.add_row(key, when(getattr(exp, key)))
    table.add_row("runs", ", ".join(exp.run_uids))
    for edit in getattr(exp, "edits", None) or []:
        table.add_row(
            "edited",
            f"{edit.get('at', '')} by {edit.get('by')}; before: {json.dumps(edit.get('previous'))}",
        )
    console.print(table)


def print_event(event: Any) -> None:
    if event.kind == "document":
        name, doc = event.document
        if name == "start":
            console.print(f"[bold]start[/] run {doc['uid']} plan {doc.get('plan_name')}")
        elif name == "event":
            data = {k: v for k, v in doc["data"].items() if not isinstance(v, list)}
            console.print(f"event {doc.get('seq_num')}: {data}")
        elif name == "event_page":
            console.print(f"event page {doc.get('seq_num')}")
        elif name == "stop":
            console.print(f"[bold]stop[/] {doc.get('exit_status')} {doc.get('reason') or ''}")
        else:
            console.print(name)
    elif event.kind == "status":
        d = event.data
        progress = d.get("progress") or {}
        console.print(
            f"[dim]worker {d.get('state')} {d.get('experiment_id') or ''} "
            f"{progress.get('done', '')}/{progress.get('total') or '?'}[/]"
        )
    elif event.kind == "end":
        console.print(f"[bold]experiment {event.data['id']} {event.data['state']}[/]")


@app.command("login")
def login(
    url: Annotated[str, typer.Argument(help="The gateway, e.g. https://lab.example.org")],
    token: Annotated[str, typer.Option("--token", prompt=True, hide_input=True)],
    lab: LAB = None,
) -> None:
    """Check a token against a gateway and save both in the client config file."""
    with user_errors(), client(url, token, lab) as c:
        who = c.whoami()
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"url = {json.dumps(url)}", f"token = {json.dumps(token)}"]
    if lab:
        lines.append(f"lab = {json.dumps(lab)}")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    console.print(f"logged in as {who['user']} ({who['role']}); saved in {path}")


@app.command("whoami")
def whoami(url: URL = None, token: TOKEN = None, as_json: JSON = False) -> None:
    """Who the token belongs to, and their role."""
    with user_errors(), client(url, token) as c:
        who = c.whoami()
    if as_json:
        dump(who)
    else:
        console.print(f"{who['user']} ({who['role']}), labs: {', '.join(who['labs']) or 'all'}")


# -- what the shared commands do through a gateway (see remotelab.cli.commands) -------------
def submit(
    c: Client,
    plan: str,
    param: list[str],
    *,
    priority: str,
    wait: bool,
    watch: bool,
    as_json: bool,
) -> Any:
    """Submit; with ``watch``, print its documents live; with ``wait``/``watch``, its end."""
    params = read_params(param, lambda: c.plan(plan)["schema"], plan=plan)
    exp = c.submit(plan, params, priority=priority)
    if not as_json:
        console.print(f"submitted experiment [bold]{exp.id}[/] ({exp.state.value})")
    if watch:
        for event in c.events(lab=exp.lab, experiment=exp.id):
            if not as_json:
                print_event(event)
    if wait or watch:
        exp = exp.wait()
    return exp


def edit(c: Client, experiment_id: str, param: list[str]) -> Any:
    """Change a waiting experiment's parameters (``key=null`` removes one)."""
    exp = c.experiment(experiment_id)
    params = read_params(param, lambda: c.plan(exp.plan)["schema"], plan=exp.plan)
    return c.edit(experiment_id, params)


def queue(
    c: Client,
    *,
    states: list[str] | None,
    mine: bool,
    submitter: str | None,
    plan: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The lab's queue (or the experiments in ``states``)."""
    if mine:
        submitter = c.whoami()["user"]
    items, total = c.experiments(state=states, submitter=submitter, plan=plan, limit=limit)
    if as_json:
        dump(items)
        return
    held = " — HELD" if c.lab()["held"] else ""
    console.print(experiments_table(items, f"lab {c.lab_name()}{held}: {len(items)} of {total}"))


def act(c: Client, action: str, experiment_id: str, **kw: Any) -> Any:
    """``cancel``, ``move``, ``prioritise``, ``approve``, ``reject`` one experiment."""
    return getattr(c, action)(experiment_id, **kw)


def watch(c: Client, experiment_id: str | None, *, timeout: float | None, as_json: bool) -> None:
    """The lab's live documents and worker status (Server-Sent Events), or one experiment's."""
    try:
        for event in c.events(experiment=experiment_id, timeout=timeout):
            if as_json:
                print(json.dumps({"event": event.kind, "data": event.data}, default=str))
            else:
                print_event(event)
    except KeyboardInterrupt:
        pass


def plans(c: Client, name: str | None, *, as_json: bool) -> None:
    """The gateway's plans and whether you may submit them; one plan: its JSON Schema."""
    data = c.plan(name) if name else c.plans()
    if as_json or name:
        dump(data)
        return
    table = Table(title=f"plans of lab {c.lab_name()}")
    for column in ("plan", "description", "you may submit", "needs approval"):
        table.add_column(column, overflow="fold")
    for p in data:
        table.add_row(p["name"], p["description"], str(p["allowed"]), str(p["needs_approval"]))
    console.print(table)


def devices_table(data: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ("device", "class", "role", "online", "busy", "limits", "safe state"):
        table.add_column(column, overflow="fold")
    for d in data:
        limits = ", ".join(f"{k} {lo:g}…{hi:g}" for k, (lo, hi) in d["limits"].items())
        safe = ", ".join(f"{k}={v}" for k, v in d.get("safe_state", {}).items())
        table.add_row(
            d["name"], d["class"], d["role"], str(d["online"]), str(d["busy"]), limits, safe
        )
    return table


def devices(c: Client, *, as_json: bool) -> None:
    """The lab's devices and their live status."""
    data = c.devices()
    if as_json:
        dump(data)
        return
    console.print(devices_table(data, f"devices of lab {c.lab_name()}"))


def lab_show(c: Client, *, as_json: bool) -> None:
    """The lab: held or not, workers, queue length, the running experiment, its devices."""
    summary, data = c.lab(), c.devices()
    if as_json:
        dump({**summary, "devices": data})
        return
    current = summary.get("current")
    console.print(
        f"lab [bold]{summary['name']}[/]"
        + (" (simulated)" if summary["simulated"] else "")
        + (" [bold red]HELD[/]" if summary["held"] else "")
        + f": {summary['workers']} worker(s), {summary['queued']} waiting"
        + (f", running {current['id']} ({current['plan']})" if current else "")
    )
    console.print(devices_table(data, "devices"))


def runs(
    c: Client,
    *,
    experiment: str | None,
    plan: str | None,
    submitter: str | None,
    sample: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Stored runs, newest first."""
    data = c.runs(experiment=experiment, plan=plan, submitter=submitter, sample=sample, limit=limit)
    if as_json:
        dump(data)
        return
    table = Table(title=f"{len(data)} run(s)")
    for column in ("uid", "plan", "experiment", "submitter", "start", "events", "exit"):
        table.add_column(column, overflow="fold")
    for r in data:
        table.add_row(
            r["uid"],
            r["plan_name"] or "",
            r["experiment_id"] or "",
            r["submitter"] or "",
            when(r["time"]),
            str(r["num_events"]),
            r["exit_status"] or "incomplete",
        )
    console.print(table)


def export(c: Client, uid: str, fmt: str, out: Path) -> list[Path]:
    """Download a run's data (an experiment id: each of its runs)."""
    from remotelab.errors import ApiNotFound

    try:
        uids = [c.run(uid)["uid"]]
    except ApiNotFound:
        uids = [r["uid"] for r in c.experiment_runs(uid)]
    return [c.export(run_uid, fmt, out) for run_uid in uids]


def control(c: Client, action: str, **kw: Any) -> str:
    """``hold``, ``release``, ``pause``, ``resume``, ``stop`` or ``abort`` the lab."""
    result = getattr(c, action)(**kw)
    return f"lab {result['lab']}: {action} done"
