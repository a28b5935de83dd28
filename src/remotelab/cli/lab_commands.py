"""The shared commands on the lab: ``plans``, ``devices`` and ``lab show|hold|release|pause|
resume|stop|abort``, through a gateway or on this machine (see :mod:`remotelab.cli.commands`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from remotelab.cli import render
from remotelab.cli.app import app, console, user_errors
from remotelab.cli.backend import open_backend
from remotelab.cli.target import API, JSON, LAB, LOCAL, SIMULATE, TOKEN, URL, RoleName
from remotelab.errors import CommandLineError


# -- the lab: plans, devices --------------------------------------------------------------------
@app.command("plans")
def plans(
    name: Annotated[str | None, typer.Argument(help="One plan: show its JSON Schema.")] = None,
    role: Annotated[
        RoleName | None,
        typer.Option("--role", help="On this machine: only the plans this role may run."),
    ] = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    as_json: JSON = False,
    simulate: SIMULATE = False,
) -> None:
    """The lab's plans (and whether you may submit them); one plan: its JSON Schema."""
    with (
        user_errors(),
        open_backend(url, token, lab, local=local, role=role, simulate=simulate) as side,
    ):
        side.plans(name, as_json=as_json)


@app.command("devices")
def devices(
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    as_json: JSON = False,
    simulate: SIMULATE = False,
) -> None:
    """The lab's devices (through a gateway: with their live status)."""
    with user_errors(), open_backend(url, token, lab, local=local, simulate=simulate) as side:
        side.devices(as_json=as_json)


# -- the lab: show and steer ------------------------------------------------------------------
lab_app = typer.Typer(
    rich_markup_mode=None, help="The lab: show it (the default), or steer it (managers)."
)
app.add_typer(lab_app, name="lab")


def _lab_show(
    url: str | None,
    token: str | None,
    local: bool,
    lab: str | None,
    as_json: bool,
    simulate: bool = False,
) -> None:
    with user_errors(), open_backend(url, token, lab, local=local, simulate=simulate) as side:
        side.show_lab(as_json=as_json)


@lab_app.callback(invoke_without_command=True)
def lab_default(
    ctx: typer.Context,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    as_json: JSON = False,
    simulate: SIMULATE = False,
) -> None:
    """The lab: show it (the default), or steer it (managers)."""
    if ctx.invoked_subcommand is None:
        _lab_show(url, token, local, lab, as_json, simulate)
    elif url or token or local or lab or as_json or simulate:
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
    simulate: SIMULATE = False,
) -> None:
    """The lab: its devices and samples, or (through a gateway) its state and live devices.

    On this machine: the lab file's devices (class, role, limits, safe state) and where each
    sample is. Through a gateway: held or not, workers, queue, the devices' live status and
    holders. Both: the running experiments, the reservations (device → holder, waiters since
    when) and why waiting experiments wait."""
    _lab_show(url, token, local, lab, as_json, simulate)


EXPERIMENT = Annotated[
    str | None,
    typer.Argument(
        help="The experiment meant; default: the one running (an error naming them if several "
        "run).",
        show_default=False,
    ),
]


def _steer(action: str, common: dict[str, Any], **kw: Any) -> None:
    """``hold``, ``release``, ``pause``, ``resume``, ``stop`` or ``abort`` the lab."""
    url, token, local, lab, api = (common[k] for k in ("url", "token", "local", "lab", "api"))
    with user_errors(), open_backend(url, token, lab, local=local, api=api) as side:
        done = getattr(side, action)(**kw)
    console.print(render.done(action, done.lab, done.detail, done.experiment), markup=False)


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


_steering("hold", "Hold the lab: running experiments finish, no further one starts.")
_steering("release", "Release a held lab.")


@lab_app.command("pause")
def lab_pause(
    experiment: EXPERIMENT = None,
    immediate: Annotated[
        bool, typer.Option("--immediate", help="Now (rewind to the last checkpoint).")
    ] = False,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
) -> None:
    """Pause a running plan at its next checkpoint; the others keep running."""
    _steer("pause", locals(), immediate=immediate, experiment=experiment)


@lab_app.command("resume")
def lab_resume(
    experiment: EXPERIMENT = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
) -> None:
    """Resume a paused plan."""
    _steer("resume", locals(), experiment=experiment)


@lab_app.command("stop")
def lab_stop(
    experiment: EXPERIMENT = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
) -> None:
    """End a running plan cleanly (it completes)."""
    _steer("stop", locals(), experiment=experiment)


@lab_app.command("abort")
def lab_abort(
    experiment: Annotated[
        str | None,
        typer.Argument(
            help="The experiment meant; default: every running one.", show_default=False
        ),
    ] = None,
    reason: Annotated[str, typer.Option(help="Why.")] = "aborted from the command line",
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
) -> None:
    """Abort a running plan (default: all of them); its own devices go safe, it ends
    cancelled."""
    _steer("abort", locals(), reason=reason, experiment=experiment)
