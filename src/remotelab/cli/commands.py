"""The commands that work on both sides: through a gateway, or on this machine's lab.

``submit``, ``edit``, ``queue``, ``show``, ``cancel``, ``move``, ``prioritise``, ``approve``,
``reject``, ``answer``, ``watch``, ``plans``, ``devices``, ``runs``, ``export``
and ``lab show|hold|…``.
Each asks :func:`remotelab.cli.target.gateway` which side to work on (``--local``, ``--url``,
``REMOTELAB_URL``, the login config file, else this machine) and hands over to the gateway
side (:mod:`remotelab.cli.remote`) or the lab side (:mod:`remotelab.cli.queue`,
:mod:`remotelab.cli.data`, :mod:`remotelab.cli.plans`, :mod:`remotelab.cli.lab`).
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from remotelab.cli import data as local_data
from remotelab.cli import lab as local_lab
from remotelab.cli import plans as local_plans
from remotelab.cli import queue as local_queue
from remotelab.cli import remote
from remotelab.cli.app import app, console, user_errors
from remotelab.cli.params import parse_value
from remotelab.cli.target import API, JSON, LAB, LOCAL, TOKEN, URL, gateway, lab_file
from remotelab.errors import CommandLineError

ID = Annotated[str, typer.Argument(help="The experiment's id.")]
BY = Annotated[
    str | None, typer.Option("--by", help="On this machine: who does it; default: your user.")
]
STORE = Annotated[
    Path | None,
    typer.Option(
        "--store", help="On this machine: run store file; default: runs.sqlite in the data dir."
    ),
]


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "someone"


@contextmanager
def _local_queue(lab: str | None, api: str | None) -> Iterator[Any]:
    q = local_queue.open_queue(lab_file(lab), api)
    try:
        yield q
    finally:
        q.close()


def _print_experiment(exp: Any, as_json: bool) -> None:
    if as_json:
        remote.dump(exp)
    else:
        console.print(f"experiment {exp.id}: {exp.state.value} {exp.message}")


# -- experiments -------------------------------------------------------------------------------
@app.command("submit")
def submit(
    plan: Annotated[str, typer.Argument(help="A plan of the lab (see 'remotelab plans').")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="key=value (JSON, or a,b,c for a list); repeat."),
    ] = None,
    priority: Annotated[str, typer.Option(help="urgent, normal or low.")] = "normal",
    wait: Annotated[bool, typer.Option("--wait", help="Wait until it ends.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Show it live until it ends.")] = False,
    submitter: Annotated[
        str | None, typer.Option(help="On this machine: who submits; default: your user.")
    ] = None,
    role: Annotated[
        str | None, typer.Option(help="On this machine: the submitter's role (researcher).")
    ] = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
    as_json: JSON = False,
) -> None:
    """Submit an experiment: a plan and its parameters.

    With --wait or --watch the exit status is 1 unless it completes."""
    lab_side = {"--submitter": submitter, "--role": role, "--api": api}
    with user_errors():
        c = gateway(url, token, lab, local=local, lab_side=lab_side)
        if c is not None:
            with c:
                exp = remote.submit(
                    c, plan, param or [], priority=priority, wait=wait, watch=watch, as_json=as_json
                )
        else:
            with _local_queue(lab, api) as q:
                exp = local_queue.submit(
                    q,
                    plan,
                    param or [],
                    submitter=submitter or _user(),
                    role=role or "researcher",
                    priority=priority,
                    wait=wait and not watch,
                )
            if not as_json:
                console.print(f"submitted experiment [bold]{exp.id}[/] ({exp.state.value})")
            if watch:
                with _local_queue(lab, api) as q:

                    def ended() -> str | None:
                        try:
                            now = q.get(exp.id).state
                        except Exception:  # a transient Prefect error: ask again later
                            return None
                        return now.value if now.finished else None

                    try:
                        local_data.watch(
                            exp.id,
                            stream=None,
                            timeout=None,
                            rows=None,
                            as_json=as_json,
                            ended=ended,
                        )
                    except typer.Exit as stopped:
                        if stopped.exit_code != 1:  # 1: the run failed; the state below says so
                            raise
                    exp = q.wait_for(exp.id, timeout=local_queue.WAIT_FOREVER)
    if as_json:
        remote.dump(exp)
    elif wait or watch:
        remote.show_experiment(exp)
    if (wait or watch) and exp.state.value != "completed":
        raise typer.Exit(1)


@app.command("edit")
def edit(
    experiment_id: ID,
    param: Annotated[
        list[str],
        typer.Option(
            "--param", "-p", help="key=value replaces one parameter, key=null removes it; repeat."
        ),
    ],
    by: BY = None,
    role: Annotated[
        str | None, typer.Option(help="On this machine: the editor's role (researcher).")
    ] = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
    as_json: JSON = False,
) -> None:
    """Change the parameters of an experiment that has not started (researchers: their own).

    The other parameters stay; the new set is validated like a submission."""
    with user_errors():
        c = gateway(
            url, token, lab, local=local, lab_side={"--api": api, "--by": by, "--role": role}
        )
        if c is not None:
            with c:
                exp = remote.edit(c, experiment_id, param)
        else:
            with _local_queue(lab, api) as q:
                exp = local_queue.edit(
                    q, experiment_id, param, by=by or _user(), role=role or "researcher"
                )
    remote.dump(exp) if as_json else remote.show_experiment(exp)


@app.command("queue")
def queue(
    state: Annotated[
        list[str] | None, typer.Option("--state", "-s", help="Only these states; repeat.")
    ] = None,
    history: Annotated[
        bool, typer.Option("--history", help="The finished experiments, newest first.")
    ] = False,
    mine: Annotated[
        bool, typer.Option("--mine", help="Through a gateway: only my experiments.")
    ] = False,
    submitter: Annotated[str | None, typer.Option(help="Only this submitter's.")] = None,
    plan: Annotated[str | None, typer.Option(help="Only this plan's.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 100,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
    as_json: JSON = False,
) -> None:
    """The lab's queue: running, queued by priority, awaiting approval (or --state, --history)."""
    from remotelab.queue import ExperimentState

    with user_errors():
        if history and state:
            raise CommandLineError("--history and --state contradict each other: give one")
        states = [s.value for s in ExperimentState if s.finished] if history else state
        c = gateway(
            url, token, lab, local=local, lab_side={"--api": api}, remote_side={"--mine": mine}
        )
        if c is not None:
            with c:
                remote.queue(
                    c,
                    states=states,
                    mine=mine,
                    submitter=submitter,
                    plan=plan,
                    limit=limit,
                    as_json=as_json,
                )
        else:
            with _local_queue(lab, api) as q:
                local_queue.queue(
                    q, states=states, submitter=submitter, plan=plan, limit=limit, as_json=as_json
                )


@app.command("show")
def show(
    experiment_id: ID,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
    as_json: JSON = False,
) -> None:
    """One experiment: plan, parameters, state, times, runs."""
    with user_errors():
        c = gateway(url, token, lab, local=local, lab_side={"--api": api})
        if c is not None:
            with c:
                exp = c.experiment(experiment_id)
        else:
            with _local_queue(lab, api) as q:
                exp = q.get(experiment_id)
    remote.dump(exp) if as_json else remote.show_experiment(exp)


def _act(
    action: str,
    experiment_id: str,
    common: dict[str, Any],
    *,
    remote_kw: dict[str, Any],
    local_kw: dict[str, Any],
    lab_side: dict[str, Any] | None = None,
) -> None:
    """An action on one experiment, on whichever side ``common`` (url, token, local, lab,
    api, as_json) chooses."""
    url, token, local, lab, api = (common[k] for k in ("url", "token", "local", "lab", "api"))
    with user_errors():
        c = gateway(url, token, lab, local=local, lab_side={"--api": api, **(lab_side or {})})
        if c is not None:
            with c:
                exp = remote.act(c, action, experiment_id, **remote_kw)
        else:
            with _local_queue(lab, api) as q:
                exp = local_queue.act(q, action, experiment_id, **local_kw)
    _print_experiment(exp, common["as_json"])


@app.command("cancel")
def cancel(
    experiment_id: ID,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
    by: BY = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
    as_json: JSON = False,
) -> None:
    """Cancel an experiment (a running one is aborted; the lab is left safe)."""
    _act(
        "cancel",
        experiment_id,
        locals(),
        remote_kw={"reason": reason},
        local_kw={"reason": reason, "by": by or _user()},
        lab_side={"--by": by},
    )


@app.command("move")
def move(
    experiment_id: ID,
    to: Annotated[str | None, typer.Option("--to", help="front or back")] = None,
    behind: Annotated[str | None, typer.Option("--behind", help="Another experiment's id.")] = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
    as_json: JSON = False,
) -> None:
    """Move a queued experiment (researchers: only their own, only --to back)."""
    kw = {"to": to, "behind": behind}
    _act("move", experiment_id, locals(), remote_kw=kw, local_kw=kw)


@app.command("prioritise")
def prioritise(
    experiment_id: ID,
    priority: Annotated[str, typer.Argument(help="urgent, normal or low")],
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
    as_json: JSON = False,
) -> None:
    """Give a queued experiment another priority (managers)."""
    kw = {"priority": priority}
    _act("prioritise", experiment_id, locals(), remote_kw=kw, local_kw=kw)


@app.command("approve")
def approve(
    experiment_id: ID,
    by: BY = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
    as_json: JSON = False,
) -> None:
    """Approve an experiment that waits for a manager's approval."""
    _act(
        "approve",
        experiment_id,
        locals(),
        remote_kw={},
        local_kw={"by": by or _user()},
        lab_side={"--by": by},
    )


@app.command("reject")
def reject(
    experiment_id: ID,
    reason: Annotated[str, typer.Option(help="Why.")] = "",
    by: BY = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
    as_json: JSON = False,
) -> None:
    """Refuse an experiment that waits for approval."""
    _act(
        "reject",
        experiment_id,
        locals(),
        remote_kw={"reason": reason},
        local_kw={"reason": reason, "by": by or _user()},
        lab_side={"--by": by},
    )


@app.command("answer")
def answer(
    experiment_id: ID,
    value: Annotated[str, typer.Argument(help="yes/no, or a value (JSON)")] = "yes",
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
) -> None:
    """Answer the operator prompt of a running experiment."""
    parsed: Any = {"yes": True, "y": True, "no": False, "n": False}.get(value.lower())
    if parsed is None:
        parsed = parse_value(value)
    with user_errors():
        c = gateway(url, token, lab, local=local, lab_side={"--api": api})
        if c is not None:
            with c:
                c.answer(experiment_id, parsed)
        else:
            with _local_queue(lab, api) as q:
                q.answer(experiment_id, parsed)
    console.print(f"answered {parsed!r}")


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
    with user_errors():
        c = gateway(url, token, lab, local=local, lab_side={"--stream": stream, "--rows": rows})
        if c is not None:
            with c:
                remote.watch(c, experiment_id, timeout=timeout, as_json=as_json)
            return
        if lab:
            raise CommandLineError("--lab: on this machine, watch follows the stream proxy")
        if experiment_id is None:
            raise CommandLineError("on this machine, watch needs an experiment id")
    local_data.watch(experiment_id, stream=stream, timeout=timeout, rows=rows, as_json=as_json)


# -- the lab: plans, devices --------------------------------------------------------------------
@app.command("plans")
def plans(
    name: Annotated[str | None, typer.Argument(help="One plan: show its JSON Schema.")] = None,
    role: Annotated[
        str | None,
        typer.Option("--role", help="On this machine: only the plans this role may run."),
    ] = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    as_json: JSON = False,
) -> None:
    """The lab's plans (and whether you may submit them); one plan: its JSON Schema."""
    with user_errors():
        c = gateway(url, token, lab, local=local, lab_side={"--role": role})
        if c is not None:
            with c:
                remote.plans(c, name, as_json=as_json)
        else:
            local_plans.plans(lab_file(lab), name, role=role, as_json=as_json)


@app.command("devices")
def devices(
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    as_json: JSON = False,
) -> None:
    """The lab's devices (through a gateway: with their live status)."""
    with user_errors():
        c = gateway(url, token, lab, local=local)
        if c is not None:
            with c:
                remote.devices(c, as_json=as_json)
        else:
            local_lab.devices(lab_file(lab), as_json=as_json)


# -- data ---------------------------------------------------------------------------------------
@app.command("runs")
def runs(
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="Experiment id.")
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
    lab_side = {"--since": since, "--until": until, "--store": store}
    with user_errors():
        c = gateway(url, token, local=local, lab_side=lab_side)
        if c is not None:
            with c:
                remote.runs(
                    c,
                    experiment=experiment,
                    plan=plan,
                    submitter=submitter,
                    sample=sample,
                    limit=limit,
                    as_json=as_json,
                )
        else:
            local_data.runs(
                experiment=experiment,
                sample=sample,
                plan=plan,
                submitter=submitter,
                since=since,
                until=until,
                limit=limit,
                as_json=as_json,
                store_path=store,
            )


@app.command("export")
def export(
    uid: Annotated[
        str, typer.Argument(help="A run uid (or a unique prefix of it), or an experiment id.")
    ],
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv, json or hdf5.")] = "csv",
    out: Annotated[
        Path, typer.Option("--output", "--out", "-o", help="Directory to write into.")
    ] = Path("."),
    stream: Annotated[
        str | None, typer.Option(help="On this machine: the event stream for csv/json (primary).")
    ] = None,
    store: STORE = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
) -> None:
    """Write a run's data to files (an experiment id: each of its runs).

    csv or json: one event stream; hdf5: the whole run, NeXus style."""
    with user_errors():
        c = gateway(url, token, local=local, lab_side={"--stream": stream, "--store": store})
        if c is not None:
            with c:
                paths = remote.export(c, uid, fmt, out)
        else:
            paths = local_data.export(uid, fmt, out, stream=stream, store_path=store)
    for path in paths:
        console.print(str(path))


# -- the lab: show and steer ------------------------------------------------------------------
lab_app = typer.Typer(help="The lab: show it (the default), or steer it (managers).")
app.add_typer(lab_app, name="lab")


def _lab_show(url, token, local, lab, as_json) -> None:
    with user_errors():
        c = gateway(url, token, lab, local=local)
        if c is not None:
            with c:
                remote.lab_show(c, as_json=as_json)
        else:
            local_lab.show(lab_file(lab), as_json=as_json)


@lab_app.callback(invoke_without_command=True)
def lab_default(
    ctx: typer.Context,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    as_json: JSON = False,
) -> None:
    """The lab: show it (the default), or steer it (managers)."""
    if ctx.invoked_subcommand is None:
        _lab_show(url, token, local, lab, as_json)
    elif url or token or local or lab or as_json:
        with user_errors():
            raise CommandLineError(
                f"give the options after the subcommand: lab {ctx.invoked_subcommand} …"
            )


@lab_app.command("show")
def lab_show(
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    as_json: JSON = False,
) -> None:
    """The lab: its devices and samples, or (through a gateway) its state and live devices.

    On this machine: the lab file's devices (class, role, limits, safe state) and where each
    sample is. Through a gateway: held or not, workers, queue, the devices' live status."""
    _lab_show(url, token, local, lab, as_json)


def _steer(action: str, common: dict[str, Any], **kw: Any) -> None:
    url, token, local, lab, api = (common[k] for k in ("url", "token", "local", "lab", "api"))
    with user_errors():
        c = gateway(url, token, lab, local=local, lab_side={"--api": api})
        if c is not None:
            with c:
                done = remote.control(c, action, **kw)
        else:
            with _local_queue(lab, api) as q:
                done = local_queue.control(q, action, **kw)
    console.print(done)


def _steering(action: str, doc: str) -> Callable[..., None]:
    def command(
        url: URL = None,
        token: TOKEN = None,
        local: LOCAL = False,
        lab: LAB = None,
        api: API = None,
    ) -> None:
        _steer(action, locals())

    command.__doc__ = doc
    return lab_app.command(action)(command)


_steering("hold", "Hold the lab: the running experiment finishes, no further one starts.")
_steering("release", "Release a held lab.")
_steering("resume", "Resume the paused plan.")
_steering("stop", "End the running plan cleanly (it completes).")


@lab_app.command("pause")
def lab_pause(
    immediate: Annotated[
        bool, typer.Option("--immediate", help="Now (rewind to the last checkpoint).")
    ] = False,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
) -> None:
    """Pause the running plan at its next checkpoint."""
    _steer("pause", locals(), immediate=immediate)


@lab_app.command("abort")
def lab_abort(
    reason: Annotated[str, typer.Option(help="Why.")] = "aborted from the command line",
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
) -> None:
    """Abort the running plan; the lab's devices go safe (it ends cancelled)."""
    _steer("abort", locals(), reason=reason)
