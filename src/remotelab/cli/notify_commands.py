"""``remotelab notify add|list|remove|test``: your notification subscriptions of a lab, through
a gateway or on this machine (see :mod:`remotelab.cli.commands`).

A subscription is an apprise URL (``mailto://…``, ``slack://…``, ``json://…``…) and the
events it wants; yours receives the events of your experiments (a manager's: the lab-wide
ones too). URLs are shown masked.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from remotelab.cli import render
from remotelab.cli.app import app, console, user_errors
from remotelab.cli.backend import Backend, open_backend
from remotelab.cli.target import API, JSON, LAB, LOCAL, TOKEN, URL, EventName, RoleName
from remotelab.notify import SUBSCRIBABLE

notify_app = typer.Typer(
    rich_markup_mode=None, help="Your notifications of a lab: add, list, remove, test."
)
app.add_typer(notify_app, name="notify")

BY = Annotated[str | None, typer.Option("--by", help="On this machine: whose; default: your user.")]
ROLE = Annotated[
    RoleName | None,
    typer.Option("--role", help="On this machine: your role (researcher; manager sees all)."),
]


def _side(opts: dict[str, Any]) -> Backend:
    return open_backend(
        opts["url"],
        opts["token"],
        opts["lab"],
        local=opts["local"],
        by=opts["by"],
        role=opts["role"],
        api=opts["api"],
    )


def _table(subs: list[dict[str, Any]]) -> Table:
    table = Table("id", "owner", "events", "url")
    for sub in subs:
        events = sub.get("events") or []
        shown = "all" if set(events) >= {k.value for k in SUBSCRIBABLE} else ", ".join(events)
        table.add_row(sub["id"], sub.get("owner") or "(lab file)", shown, sub["url"])
    return table


@notify_app.command("add")
def add(
    target: Annotated[
        str, typer.Argument(help="An apprise URL, e.g. mailto://user:pass@smtp.example.org.")
    ],
    event: Annotated[
        list[EventName] | None,
        typer.Option("--event", "-e", help="An event to receive; repeat. Default: all."),
    ] = None,
    by: BY = None,
    role: ROLE = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
    as_json: JSON = False,
) -> None:
    """Subscribe to the lab's notifications through an apprise URL."""
    with user_errors(), _side(locals()) as side:
        sub = side.subscribe(target, list(event or []))
    if as_json:
        render.dump(sub)
    else:
        console.print(
            f"subscribed {sub['id']}: {sub['url']} ({', '.join(sub['events'])})", markup=False
        )


@notify_app.command("list")
def list_(
    by: BY = None,
    role: ROLE = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
    as_json: JSON = False,
) -> None:
    """Your subscriptions (a manager: all of the lab's), their URLs masked."""
    with user_errors(), _side(locals()) as side:
        subs = side.subscriptions()
    if as_json:
        render.dump(subs)
    elif not subs:
        console.print("no notification subscriptions (remotelab notify add URL)")
    else:
        console.print(_table(subs))


@notify_app.command("remove")
def remove(
    subscription_id: Annotated[str, typer.Argument(help="The subscription's id (notify list).")],
    by: BY = None,
    role: ROLE = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
    as_json: JSON = False,
) -> None:
    """Remove one of your subscriptions (a manager: anyone's)."""
    with user_errors(), _side(locals()) as side:
        sub = side.unsubscribe(subscription_id)
    if as_json:
        render.dump(sub)
    else:
        console.print(f"removed {sub['id']}: {sub['url']}", markup=False)


@notify_app.command("test")
def test(
    subscription_id: Annotated[
        str | None, typer.Argument(help="One subscription; default: all of yours.")
    ] = None,
    by: BY = None,
    role: ROLE = None,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    lab: LAB = None,
    api: API = None,
    as_json: JSON = False,
) -> None:
    """Send a test notification now; exit status 1 unless every one went out."""
    with user_errors(), _side(locals()) as side:
        done = side.notify_test(subscription_id)
    if as_json:
        render.dump(done)
    elif not done:
        console.print("no notification subscriptions to test (remotelab notify add URL)")
    for item in [] if as_json else done:
        mark = "[green]sent[/]" if item["ok"] else f"[red]failed[/]: {item['error']}"
        console.print(f"{item['subscription']} {item['url']}: {mark}")
    if not all(item["ok"] for item in done):
        raise typer.Exit(1)


__all__ = ["notify_app"]
