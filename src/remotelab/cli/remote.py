"""The remote commands: ``remotelab submit``, ``experiments``, ``show``, ``follow``, ``download``…

They talk to a gateway through :class:`remotelab.Client`. The gateway and token come from
``--url``/``--token``, else ``REMOTELAB_URL``/``REMOTELAB_TOKEN``, else the config file
written by ``remotelab login`` (``REMOTELAB_CONFIG``, default
``~/.config/remotelab/client.toml``). Tables for humans; ``--json`` for scripts.
"""

from __future__ import annotations

import contextlib
import json
import os
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import platformdirs
import typer
from rich.table import Table

from remotelab.cli.app import app, console, err_console, user_errors
from remotelab.errors import ApiError

URL = Annotated[str | None, typer.Option("--url", help="The gateway; default: REMOTELAB_URL.")]
TOKEN = Annotated[
    str | None, typer.Option("--token", help="An API token; default: REMOTELAB_TOKEN.")
]
LAB = Annotated[
    str | None, typer.Option("--lab", "-l", help="The lab; default: the gateway's only lab.")
]
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]

control_app = typer.Typer(
    help="Steer the lab (managers): hold, release, pause, resume, stop, abort.",
    no_args_is_help=True,
)
app.add_typer(control_app, name="control")


def config_path() -> Path:
    env = os.environ.get("REMOTELAB_CONFIG")
    if env:
        return Path(env)
    return Path(platformdirs.user_config_dir("remotelab", appauthor=False)) / "client.toml"


def _config() -> dict[str, Any]:
    path = config_path()
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        err_console.print(f"[yellow]warning:[/] ignoring {path}: {exc}")
        return {}


def client(url: str | None, token: str | None, lab: str | None = None):
    """A client from the options, the environment or the config file (in that order)."""
    from remotelab.client import Client

    cfg = _config()
    url = url or os.environ.get("REMOTELAB_URL") or cfg.get("url")
    token = token or os.environ.get("REMOTELAB_TOKEN") or cfg.get("token")
    lab = lab or os.environ.get("REMOTELAB_LAB") or cfg.get("lab")
    if not url:
        raise ApiError(0, "no gateway: pass --url, set REMOTELAB_URL or run 'remotelab login'")
    return Client(url, token, lab=lab)


def _dump(data: Any) -> None:
    if hasattr(data, "model_dump"):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [d.model_dump(mode="json") if hasattr(d, "model_dump") else d for d in data]
    console.print_json(json.dumps(data, default=str))


def _when(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def parse_param(text: str) -> tuple[str, Any]:
    """``key=value``: the value as JSON if it parses, a comma list as a list, else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        from remotelab.errors import ApiInvalid

        raise ApiInvalid(0, f"parameter {text!r}: write it as key=value")
    try:
        return key, json.loads(raw)
    except ValueError:
        pass
    if "," in raw:
        return key, [parse_param(f"x={part}")[1] for part in raw.split(",") if part]
    return key, raw


def _takes_list(schema: dict[str, Any]) -> bool:
    """Whether a JSON Schema accepts an array (and not a plain value)."""
    options = schema.get("anyOf") or schema.get("oneOf") or [schema]
    types = {o.get("type") for o in options}
    return "array" in types and not types & {"string", "number", "integer", "boolean"}


def fit_params(params: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Wrap a single value in a list where the plan's schema takes a list
    (``-p detectors=thermometer`` means ``["thermometer"]``)."""
    props = schema.get("properties", {})
    return {
        k: [v] if k in props and _takes_list(props[k]) and not isinstance(v, list) else v
        for k, v in params.items()
    }


def _experiments_table(items: list, title: str) -> Table:
    table = Table(title=title)
    for column in ("id", "plan", "submitter", "priority", "state", "created", "message"):
        table.add_column(column, overflow="fold")
    for e in items:
        table.add_row(
            e.id, e.plan, e.submitter, e.priority.value, e.state.value, _when(e.created), e.message
        )
    return table


def _show(exp: Any) -> None:
    table = Table(show_header=False, title=f"experiment {exp.id}")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key in ("plan", "params", "lab", "submitter", "priority", "state", "message"):
        value = getattr(exp, key)
        value = getattr(value, "value", value)
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    for key in ("created", "started", "ended"):
        table.add_row(key, _when(getattr(exp, key)))
    table.add_row("runs", ", ".join(exp.run_uids))
    console.print(table)


def _print_event(event: Any) -> None:
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
        _dump(who)
    else:
        console.print(f"{who['user']} ({who['role']}), labs: {', '.join(who['labs']) or 'all'}")


@app.command("submit")
def submit(
    plan: Annotated[str, typer.Argument(help="A plan of the lab (see 'remotelab plans').")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="key=value (JSON, or a,b,c for a list); repeat."),
    ] = None,
    priority: Annotated[str, typer.Option(help="urgent, normal or low.")] = "normal",
    wait: Annotated[bool, typer.Option("--wait", help="Wait until it ends.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Show its documents live.")] = False,
    url: URL = None,
    token: TOKEN = None,
    lab: LAB = None,
    as_json: JSON = False,
) -> None:
    """Submit an experiment: a plan and its parameters."""
    with user_errors(), client(url, token, lab) as c:
        params = dict(parse_param(p) for p in param or [])
        if params:
            with contextlib.suppress(ApiError):  # an unknown plan: the submission says so
                params = fit_params(params, c.plan(plan)["schema"])
        exp = c.submit(plan, params, priority=priority)
        if not as_json:
            console.print(f"submitted experiment [bold]{exp.id}[/] ({exp.state.value})")
        if watch:
            for event in c.events(lab=exp.lab, experiment=exp.id):
                if not as_json:
                    _print_event(event)
        if wait or watch:
            exp = exp.wait()
    if as_json:
        _dump(exp)
    elif wait or watch:
        _show(exp)
    if (wait or watch) and exp.state.value != "completed":
        raise typer.Exit(1)


@app.command("experiments")
def experiments(
    state: Annotated[
        list[str] | None, typer.Option("--state", "-s", help="Only these states; repeat.")
    ] = None,
    mine: Annotated[bool, typer.Option("--mine", help="Only my experiments.")] = False,
    submitter: Annotated[str | None, typer.Option(help="Only this submitter's.")] = None,
    plan: Annotated[str | None, typer.Option(help="Only this plan's.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    url: URL = None,
    token: TOKEN = None,
    lab: LAB = None,
    as_json: JSON = False,
) -> None:
    """The lab's queue: running, queued by priority, awaiting approval (or --state …)."""
    with user_errors(), client(url, token, lab) as c:
        if mine:
            submitter = c.whoami()["user"]
        items, total = c.experiments(state=state, submitter=submitter, plan=plan, limit=limit)
        name = c.lab_name()
    if as_json:
        _dump(items)
        return
    console.print(_experiments_table(items, f"lab {name}: {len(items)} of {total}"))


@app.command("show")
def show(
    experiment_id: Annotated[str, typer.Argument(help="The experiment's id.")],
    url: URL = None,
    token: TOKEN = None,
    lab: LAB = None,
    as_json: JSON = False,
) -> None:
    """One experiment: plan, parameters, state, times, runs."""
    with user_errors(), client(url, token, lab) as c:
        exp = c.experiment(experiment_id)
    _dump(exp) if as_json else _show(exp)


def _experiment_action(action: str, experiment_id: str, url, token, lab, as_json, **kw) -> None:
    with user_errors(), client(url, token, lab) as c:
        exp = getattr(c, action)(experiment_id, **kw)
    if as_json:
        _dump(exp)
    else:
        console.print(f"experiment {exp.id}: {exp.state.value} {exp.message}")


@app.command("cancel")
def cancel(
    experiment_id: Annotated[str, typer.Argument(help="The experiment's id.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
    url: URL = None,
    token: TOKEN = None,
    lab: LAB = None,
    as_json: JSON = False,
) -> None:
    """Cancel an experiment (a running one is aborted; the lab is left safe)."""
    _experiment_action("cancel", experiment_id, url, token, lab, as_json, reason=reason)


@app.command("move")
def move(
    experiment_id: Annotated[str, typer.Argument(help="The experiment's id.")],
    to: Annotated[str | None, typer.Option("--to", help="front or back")] = None,
    behind: Annotated[str | None, typer.Option("--behind", help="Another experiment's id.")] = None,
    url: URL = None,
    token: TOKEN = None,
    lab: LAB = None,
    as_json: JSON = False,
) -> None:
    """Move a queued experiment (researchers: only their own, only --to back)."""
    _experiment_action("move", experiment_id, url, token, lab, as_json, to=to, behind=behind)


@app.command("prioritise")
def prioritise(
    experiment_id: Annotated[str, typer.Argument(help="The experiment's id.")],
    priority: Annotated[str, typer.Argument(help="urgent, normal or low")],
    url: URL = None,
    token: TOKEN = None,
    lab: LAB = None,
    as_json: JSON = False,
) -> None:
    """Give a queued experiment another priority (managers)."""
    _experiment_action("prioritise", experiment_id, url, token, lab, as_json, priority=priority)


@app.command("approve")
def approve(
    experiment_id: Annotated[str, typer.Argument(help="The experiment's id.")],
    url: URL = None,
    token: TOKEN = None,
    lab: LAB = None,
    as_json: JSON = False,
) -> None:
    """Approve an experiment that waits for a manager's approval."""
    _experiment_action("approve", experiment_id, url, token, lab, as_json)


@app.command("reject")
def reject(
    experiment_id: Annotated[str, typer.Argument(help="The experiment's id.")],
    reason: Annotated[str, typer.Option(help="Why.")] = "",
    url: URL = None,
    token: TOKEN = None,
    lab: LAB = None,
    as_json: JSON = False,
) -> None:
    """Refuse an experiment that waits for approval."""
    _experiment_action("reject", experiment_id, url, token, lab, as_json, reason=reason)


@app.command("answer")
def answer(
    experiment_id: Annotated[str, typer.Argument(help="The experiment's id.")],
    value: Annotated[str, typer.Argument(help="yes/no, or a value")] = "yes",
    url: URL = None,
    token: TOKEN = None,
    lab: LAB = None,
) -> None:
    """Answer the operator prompt of a running experiment."""
    parsed: Any = {"yes": True, "y": True, "no": False, "n": False}.get(value.lower())
    if parsed is None:
        parsed = parse_param(f"v={value}")[1]
    with user_errors(), client(url, token, lab) as c:
        c.answer(experiment_id, parsed)
    console.print(f"answered {parsed!r}")


@app.command("follow")
def watch(
    experiment_id: Annotated[
        str | None, typer.Argument(help="Only this experiment (ends when it ends).")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    url: URL = None,
    token: TOKEN = None,
    lab: LAB = None,
    as_json: JSON = False,
) -> None:
    """Live documents and worker status of the lab, or of one experiment."""
    with user_errors(), client(url, token, lab) as c:
        try:
            for event in c.events(experiment=experiment_id, timeout=timeout):
                if as_json:
                    print(json.dumps({"event": event.kind, "data": event.data}, default=str))
                else:
                    _print_event(event)
        except KeyboardInterrupt:
            pass


@app.command("catalog")
def plans(
    name: Annotated[str | None, typer.Argument(help="One plan: show its schema.")] = None,
    url: URL = None,
    token: TOKEN = None,
    lab: LAB = None,
    as_json: JSON = False,
) -> None:
    """The lab's plans and whether you may submit them (one plan: its JSON Schema)."""
    with user_errors(), client(url, token, lab) as c:
        data = c.plan(name) if name else c.plans()
    if as_json or name:
        _dump(data)
        return
    table = Table(title="plans")
    for column in ("plan", "description", "you may submit", "needs approval"):
        table.add_column(column, overflow="fold")
    for p in data:
        table.add_row(p["name"], p["description"], str(p["allowed"]), str(p["needs_approval"]))
    console.print(table)


@app.command("devices")
def devices(url: URL = None, token: TOKEN = None, lab: LAB = None, as_json: JSON = False) -> None:
    """The lab's devices and their live status."""
    with user_errors(), client(url, token, lab) as c:
        data = c.devices()
    if as_json:
        _dump(data)
        return
    table = Table(title="devices")
    for column in ("device", "class", "role", "online", "busy", "limits"):
        table.add_column(column, overflow="fold")
    for d in data:
        limits = ", ".join(f"{k} {lo:g}…{hi:g}" for k, (lo, hi) in d["limits"].items())
        table.add_row(d["name"], d["class"], d["role"], str(d["online"]), str(d["busy"]), limits)
    console.print(table)


@app.command("results")
def runs(
    experiment: Annotated[str | None, typer.Option(help="Only this experiment's runs.")] = None,
    plan: Annotated[str | None, typer.Option(help="Only this plan's runs.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    url: URL = None,
    token: TOKEN = None,
    as_json: JSON = False,
) -> None:
    """Stored runs, newest first."""
    with user_errors(), client(url, token) as c:
        data = c.runs(experiment=experiment, plan=plan, limit=limit)
    if as_json:
        _dump(data)
        return
    table = Table(title="runs")
    for column in ("uid", "plan", "experiment", "submitter", "start", "events", "exit"):
        table.add_column(column, overflow="fold")
    for r in data:
        table.add_row(
            r["uid"],
            r["plan_name"] or "",
            r["experiment_id"] or "",
            r["submitter"] or "",
            _when(r["time"]),
            str(r["num_events"]),
            r["exit_status"] or "incomplete",
        )
    console.print(table)


@app.command("download")
def export(
    uid: Annotated[str, typer.Argument(help="A run uid (or unique prefix), or an experiment id.")],
    format: Annotated[str, typer.Option("--format", "-f", help="csv, json or hdf5")] = "csv",
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write into.")] = Path("."),
    url: URL = None,
    token: TOKEN = None,
    lab: LAB = None,
) -> None:
    """Download a run's data (an experiment id: each of its runs)."""
    from remotelab.errors import ApiNotFound

    with user_errors(), client(url, token, lab) as c:
        try:
            uids = [c.run(uid)["uid"]]
        except ApiNotFound:
            uids = [r["uid"] for r in c.experiment_runs(uid)]
        for run_uid in uids:
            path = c.export(run_uid, format, out)
            console.print(f"wrote {path}")


def _control(action: str, url, token, lab, **kw) -> None:
    with user_errors(), client(url, token, lab) as c:
        result = getattr(c, action)(**kw)
    console.print(f"lab {result['lab']}: {action} done")


@control_app.command("hold")
def control_hold(url: URL = None, token: TOKEN = None, lab: LAB = None) -> None:
    """Hold the lab: the running experiment finishes, no further one starts."""
    _control("hold", url, token, lab)


@control_app.command("release")
def control_release(url: URL = None, token: TOKEN = None, lab: LAB = None) -> None:
    """Release a held lab."""
    _control("release", url, token, lab)


@control_app.command("pause")
def control_pause(
    immediate: Annotated[bool, typer.Option(help="Now, not at the next checkpoint.")] = False,
    url: URL = None,
    token: TOKEN = None,
    lab: LAB = None,
) -> None:
    """Pause the running plan."""
    _control("pause", url, token, lab, immediate=immediate)


@control_app.command("resume")
def control_resume(url: URL = None, token: TOKEN = None, lab: LAB = None) -> None:
    """Resume the paused plan."""
    _control("resume", url, token, lab)


@control_app.command("stop")
def control_stop(url: URL = None, token: TOKEN = None, lab: LAB = None) -> None:
    """End the running plan cleanly."""
    _control("stop", url, token, lab)


@control_app.command("abort")
def control_abort(
    reason: Annotated[str, typer.Option(help="Why.")] = "",
    url: URL = None,
    token: TOKEN = None,
    lab: LAB = None,
) -> None:
    """Abort the running plan; the lab's devices go safe."""
    _control("abort", url, token, lab, reason=reason)
