"""The commands that work on both sides: through a gateway, or on this machine's lab.

``submit``, ``edit``, ``queue``, ``show``, ``cancel``, ``move``, ``prioritise``, ``approve``,
``reject`` and ``answer`` are here; ``watch``, ``runs`` and ``export`` in
:mod:`remotelab.cli.data_commands`; ``plans``, ``devices`` and ``lab show|hold|…`` in
:mod:`remotelab.cli.lab_commands`.
Each opens the side it works on with :func:`remotelab.cli.backend.open_backend` (``--local``,
``--url``, ``REMOTELAB_URL``, the login config file, else this machine), calls one method of
that :class:`~remotelab.cli.backend.Backend` and prints the answer with
:mod:`remotelab.cli.render`, the same for both sides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from remotelab.cli import render
from remotelab.cli.app import app, console, user_errors
from remotelab.cli.backend import Backend, open_backend
from remotelab.cli.params import parse_value, read_params
from remotelab.cli.target import (
    API,
    JSON,
    LAB,
    LOCAL,
    TOKEN,
    URL,
    Place,
    PriorityName,
    RoleName,
    StateName,
)
from remotelab.errors import CommandLineError

ID = Annotated[str, typer.Argument(help="The experiment's id.")]
BY = Annotated[
    str | None, typer.Option("--by", help="On this machine: who does it; default: your user.")
]


# -- experiments -------------------------------------------------------------------------------
@app.command("submit")
def submit(
    plan: Annotated[str, typer.Argument(help="A plan of the lab (see 'remotelab plans').")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="key=value (JSON, or a,b,c for a list); repeat."),
    ] = None,
    priority: Annotated[PriorityName, typer.Option(help="How soon it runs.")] = "normal",
    wait: Annotated[bool, typer.Option("--wait", help="Wait until it ends.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Show it live until it ends.")] = False,
    submitter: Annotated[
        str | None, typer.Option(help="On this machine: who submits; default: your user.")
    ] = None,
    role: Annotated[
        RoleName | None, typer.Option(help="On this machine: the submitter's role (researcher).")
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
    with (
        user_errors(),
        open_backend(url, token, lab, local=local, submitter=submitter, role=role, api=api) as side,
    ):
        params = read_params(param or [], lambda: side.schema(plan), plan=plan)
        exp = side.submit(plan, params, priority=priority)
        if not as_json:
            render.submitted(exp)
        if watch:
            side.follow(exp.id, as_json=as_json)
        if wait or watch:
            exp = side.wait(exp.id)
    if as_json:
        render.dump(exp)
    elif wait or watch:
        render.show_experiment(exp)
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
        RoleName | None, typer.Option(help="On this machine: the editor's role (researcher).")
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
    with (
        user_errors(),
        open_backend(url, token, lab, local=local, api=api, by=by, role=role) as side,
    ):
        exp = side.experiment(experiment_id)
        params = read_params(param, lambda: side.schema(exp.plan), plan=exp.plan)
        exp = side.edit(experiment_id, params)
    render.experiment(exp, as_json)


@app.command("queue")
def queue(
    state: Annotated[
        list[StateName] | None, typer.Option("--state", "-s", help="Only these; repeat.")
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
        states = [s.value for s in ExperimentState if s.finished] if history else None
        states = states or [str(s) for s in state or []] or None
        with open_backend(
            url, token, lab, local=local, remote_side={"--mine": mine}, api=api
        ) as side:
            items, total = side.experiments(
                states=states, submitter=submitter, plan=plan, limit=limit, mine=mine
            )
            if as_json:
                render.dump(items)
                return
            render.print_queue(items, total, lab=side.lab_name(), held=side.is_held())


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
    with user_errors(), open_backend(url, token, lab, local=local, api=api) as side:
        exp = side.experiment(experiment_id)
    render.experiment(exp, as_json)


def _act(common: dict[str, Any], action: Callable[[Backend], Any], **lab_side: Any) -> None:
    """An action on one experiment, on whichever side ``common`` (url, token, local, lab,
    api, as_json) chooses; ``lab_side``: more options of this machine's side (``by``)."""
    url, token, local, lab, api = (common[k] for k in ("url", "token", "local", "lab", "api"))
    with user_errors(), open_backend(url, token, lab, local=local, api=api, **lab_side) as side:
        exp = action(side)
    render.experiment_line(exp, common["as_json"])


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
    _act(locals(), lambda side: side.cancel(experiment_id, reason=reason), by=by)


@app.command("move")
def move(
    experiment_id: ID,
    to: Annotated[Place | None, typer.Option("--to", help="Where in the queue.")] = None,
    behind: Annotated[str | None, typer.Option("--behind", help="Another experiment's id.")] = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
    as_json: JSON = False,
) -> None:
    """Move a queued experiment (researchers: only their own, only --to back)."""
    _act(locals(), lambda side: side.move(experiment_id, to=to, behind=behind))


@app.command("prioritise")
def prioritise(
    experiment_id: ID,
    priority: Annotated[PriorityName, typer.Argument(help="The new priority.")],
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
    as_json: JSON = False,
) -> None:
    """Give a queued experiment another priority (managers)."""
    _act(locals(), lambda side: side.prioritise(experiment_id, priority))


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
    _act(locals(), lambda side: side.approve(experiment_id), by=by)


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
    _act(locals(), lambda side: side.reject(experiment_id, reason=reason), by=by)


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
    with user_errors(), open_backend(url, token, lab, local=local, api=api) as side:
        side.answer(experiment_id, parsed)
    console.print(f"answered {parsed!r}", markup=False)
