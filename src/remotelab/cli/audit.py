"""``remotelab audit``: read the audit log and verify its hash chain.

Through a gateway (``--url``, ``REMOTELAB_URL``, ``remotelab login``) these read
``GET /audit``, ``/audit/head`` and ``/audit/verify`` with a manager's token; on the
gateway's machine (``--local``, or no gateway configured) they read the user database
directly (``auth.sqlite`` in the data directory, or ``--db``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from remotelab.cli.app import app, console, user_errors
from remotelab.cli.target import JSON, LOCAL, TOKEN, URL, gateway

audit_app = typer.Typer(
    help="The audit log: who did what, when; verify its hash chain.",
    invoke_without_command=True,
)
app.add_typer(audit_app, name="audit")

DB = Annotated[
    Path | None,
    typer.Option("--db", help="On the gateway's machine: the user database (auth.sqlite)."),
]


def _local_store(db: Path | None) -> Any:
    from remotelab.api.auth import AuthStore

    return AuthStore(db)


def _on_either_side(
    url: str | None,
    token: str | None,
    local: bool,
    db: Path | None,
    *,
    remote: Callable[[Any], Any],
    here: Callable[[Any], Any],
) -> Any:
    """``remote(client)`` through the gateway the options name, else ``here(store)`` on this
    machine's user database; remotelab's errors as one line."""
    with user_errors():
        client = gateway(url, token, local=local, lab_side={"--db": db})
        if client is not None:
            with client:
                return remote(client)
        with _local_store(db) as store:
            return here(store)


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _entries_table(entries: list[dict[str, Any]]) -> Table:
    table = Table("seq", "time (UTC)", "actor", "action", "target", "lab", "status", "detail")
    for e in entries:
        detail = json.dumps(e.get("detail") or {}, default=str)
        table.add_row(
            *(
                Text(str(v))  # user text, never markup
                for v in (
                    e["seq"],
                    _when(e["time"]),
                    f"{e['actor']} ({e['role']})",
                    e["action"],
                    e.get("target", ""),
                    e.get("lab", ""),
                    e["status"],
                    detail if len(detail) <= 80 else detail[:79] + "…",
                )
            )
        )
    return table


@audit_app.callback()
def audit(
    ctx: typer.Context,
    lab: Annotated[str | None, typer.Option("--lab", "-l", help="Only this lab's entries.")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this user's entries.")] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="Only this action (e.g. experiment.cancel).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 50,
    as_json: JSON = False,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    db: DB = None,
) -> None:
    """The newest audit entries (filters combine) and the head hash of the log's chain."""
    if ctx.invoked_subcommand is not None:
        return
    filters = {"lab": lab, "actor": actor, "action": action, "limit": limit}
    entries, head = _on_either_side(
        url,
        token,
        local,
        db,
        remote=lambda c: (
            c.audit(**{k: v for k, v in filters.items() if v is not None}),
            c.audit_head()["head"],
        ),
        here=lambda s: ([e.model_dump() for e in s.audit(**filters)], s.audit_head()),
    )
    if as_json:
        console.print_json(data={"head": head, "entries": entries})
        return
    console.print(_entries_table(entries))
    console.print(Text(f"head of the audit chain: {head or '(no chained row yet)'}"))


@audit_app.command("verify")
def verify(
    head: Annotated[
        str | None,
        typer.Option(
            "--head", help="A head hash recorded earlier (a run's audit_head): is it still there?"
        ),
    ] = None,
    as_json: JSON = False,
    url: URL = None,
    token: TOKEN = None,
    local: LOCAL = False,
    db: DB = None,
) -> None:
    """Walk the audit log's hash chain; name the first row changed, deleted or reordered.

    Exit status 1 if the chain does not hold (or the --head hash is not in it)."""
    report = _on_either_side(
        url,
        token,
        local,
        db,
        remote=lambda c: c.verify_audit(head=head),
        here=lambda s: s.verify_audit(expect_head=head).model_dump(),
    )
    ok = report["ok"] and report.get("head_found") is not False
    if as_json:
        console.print_json(data=report)
    elif report["ok"]:
        console.print(
            Text(
                f"audit log intact: {report['rows']} rows"
                + (f" ({report['unchained']} from before the chain)" if report["unchained"] else "")
                + f", head {report['head'] or '(none)'}"
            )
        )
        if report.get("head_found") is False:
            console.print(Text(f"but head {head} is not in the chain: rows were removed since"))
    else:
        console.print(Text(f"audit log TAMPERED: {report['problem']}", style="bold red"))
    if not ok:
        raise typer.Exit(1)


__all__ = ["audit", "verify"]
