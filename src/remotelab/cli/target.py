"""Which side a command works on: a remote gateway, or this machine's lab.

Every command that exists on both sides (``submit``, ``queue``, ``show``, ``watch``, ``runs``,
``export``, ``lab``…) asks :func:`gateway` once. The precedence, first match wins:

1. ``--local``: this machine (its Prefect, run store, stream and lab file);
2. ``--url URL``: that gateway;
3. ``REMOTELAB_URL``: that gateway;
4. the ``url`` of the config file written by ``remotelab login`` (``REMOTELAB_CONFIG``,
   default ``~/.config/remotelab/client.toml``): that gateway;
5. otherwise this machine.

``--local`` together with ``--url`` is an error, and so is an option of one side given while
the other side was chosen (e.g. ``--store`` with a gateway, ``--token`` without one).
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from remotelab.errors import CommandLineError

if TYPE_CHECKING:
    from remotelab.client import Client

#: the values of options with a fixed set (``--help`` lists them; another is refused in one
#: line): as :class:`~remotelab.queue.Priority`, :class:`~remotelab.queue.ExperimentState`,
#: the plan registry's ``ROLES`` and the notifications' ``SUBSCRIBABLE`` say (spelled out
#: here so the CLI starts without importing Prefect; a test keeps them the same)
PriorityName = Literal["urgent", "normal", "low"]


class StateName(StrEnum):
    """An experiment state (``queue --state``)."""

    waiting_for_approval = "waiting_for_approval"
    queued = "queued"
    running = "running"
    paused = "paused"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    crashed = "crashed"


RoleName = Literal["observer", "researcher", "manager", "admin"]
Place = Literal["front", "back"]


class EventName(StrEnum):
    """A kind of notification one may subscribe to (``notify add --event``)."""

    experiment_failed = "experiment_failed"
    experiment_crashed = "experiment_crashed"
    awaiting_approval = "awaiting_approval"
    operator_question = "operator_question"
    lab_held = "lab_held"
    worker_lost = "worker_lost"
    watchdog_alert = "watchdog_alert"


URL = Annotated[
    str | None,
    typer.Option("--url", help="Work through this gateway (default: REMOTELAB_URL, login)."),
]
TOKEN = Annotated[
    str | None, typer.Option("--token", help="API token of the gateway; default: REMOTELAB_TOKEN.")
]
LOCAL = Annotated[
    bool,
    typer.Option("--local", help="Work on this machine's lab even if a gateway is configured."),
]
LAB = Annotated[
    str | None,
    typer.Option(
        "--lab",
        "-l",
        help="On this machine: the lab file (YAML; default: the shipped simulated lab). "
        "Through a gateway: the lab's name (default: the gateway's only lab).",
    ),
]
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
SIMULATE = Annotated[
    bool,
    typer.Option(
        "--simulate",
        help="On this machine: the lab file's simulated twin (every device on its simulator; "
        "no serial port opened).",
    ),
]
API = Annotated[
    str | None,
    typer.Option(
        "--api",
        help="On this machine: Prefect API URL; default: $REMOTELAB_PREFECT_API_URL or "
        "$PREFECT_API_URL.",
    ),
]


def where(url: str | None) -> str | None:
    """Where the gateway comes from (``--url``, ``REMOTELAB_URL``, the config file), or None."""
    from remotelab.cli.remote import config_path, read_config

    if url:
        return "--url"
    if os.environ.get("REMOTELAB_URL"):
        return "REMOTELAB_URL"
    if read_config().get("url"):
        return f"the config file {config_path()}"
    return None


def _given(options: dict[str, Any]) -> list[str]:
    return [flag for flag, value in options.items() if value not in (None, False, [], ())]


def _list(flags: list[str]) -> str:
    return f"{', '.join(flags)} only work{'s' if len(flags) == 1 else ''}"


def _looks_like_a_file(lab: str) -> bool:
    return lab.endswith((".yaml", ".yml")) or os.sep in lab or Path(lab).is_file()


def gateway(
    url: str | None,
    token: str | None,
    lab: str | None = None,
    *,
    local: bool = False,
    lab_side: dict[str, Any] | None = None,
    remote_side: dict[str, Any] | None = None,
) -> Client | None:
    """The client of the gateway a command should use, or None to work on this machine.

    ``lab_side``/``remote_side`` map the flags that make sense on one side only to their
    values; one given on the other side is a usage error that says so.
    """
    if local and url:
        raise CommandLineError("--local and --url contradict each other: give one of them")
    source = None if local else where(url)
    if source is None:
        wrong = _given({"--token": token, **(remote_side or {})})
        if wrong:
            raise CommandLineError(
                f"{_list(wrong)} through a gateway; "
                + (
                    "drop --local"
                    if local
                    else "pass --url, set REMOTELAB_URL or run 'remotelab login'"
                )
            )
        return None
    wrong = _given(lab_side or {})
    if lab and _looks_like_a_file(lab):
        wrong.insert(0, f"--lab {lab} (a lab file)")
    if wrong:
        raise CommandLineError(
            f"{_list(wrong)} on this machine's lab, but a gateway is "
            f"configured ({source}); add --local to work on this machine"
        )
    from remotelab.cli.remote import client

    return client(url, token, lab)


def lab_file(lab: str | None) -> Path | None:
    """``--lab`` on this machine: the lab file, or None for the shipped simulated lab."""
    return Path(lab) if lab else None


__all__ = [
    "API",
    "JSON",
    "LAB",
    "LOCAL",
    "SIMULATE",
    "TOKEN",
    "URL",
    "EventName",
    "Place",
    "PriorityName",
    "RoleName",
    "StateName",
    "gateway",
    "lab_file",
    "where",
]
