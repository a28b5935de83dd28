"""``remotelab users`` and ``remotelab tokens``: accounts of the gateway, on the server machine.

These work on the gateway's user database directly (``auth.sqlite`` in the data
directory, or ``--db``; without either, the one ``remotelab demo`` keeps in its default data
directory), so they need no token; each change is written to the audit log with the local
account as its actor. Only ``users add`` creates a database; the others refuse a missing one.
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from remotelab.api.auth import AuthStore, Role, default_auth_path
from remotelab.cli.app import app, console, err_console, user_errors
from remotelab.errors import AccountError

users_app = typer.Typer(
    rich_markup_mode=None, help="Users of the gateway and their roles.", no_args_is_help=True
)
tokens_app = typer.Typer(
    rich_markup_mode=None,
    help="API tokens: create (shown once), list, revoke.",
    no_args_is_help=True,
)
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")

DB_OPTION = typer.Option(
    None,
    "--db",
    help="The user database; default: auth.sqlite in REMOTELAB_DATA_DIR (if missing: the "
    "demo's, if it has one).",
)
JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of tables.")


def _store(db: Path | None, *, create: bool = False) -> AuthStore:
    """The user database: ``db``, else :func:`database`. Only ``create`` (``users add``)
    makes a new one; every other command on a missing one says so."""
    path = db or database()
    if not create and not path.is_file():
        raise AccountError(
            f"no user database at {path}: add a user first ('remotelab users add'), or pass "
            "--db FILE (remotelab demo keeps its users in auth.sqlite of its --data directory)"
        )
    return AuthStore(path)


def database() -> Path:
    """The default user database: ``auth.sqlite`` in the data directory; if there is none
    but ``remotelab demo`` keeps one in its default data directory, that one (said on
    stderr)."""
    from remotelab.settings import demo_data_dir

    path = default_auth_path()
    demo = demo_data_dir() / "auth.sqlite"
    if not path.exists() and demo.is_file():
        err_console.print(f"the demo's user database: {demo}", style="dim", markup=False)
        return demo
    return path


def _audit(store: AuthStore, action: str, target: str, **detail: object) -> None:
    store.record(
        actor=f"local:{getpass.getuser()}",
        role=Role.admin.value,
        action=action,
        target=target,
        client="cli",
        status=200,
        detail=dict(detail),
    )


def _when(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="The user's name.")],
    role: Annotated[
        Role, typer.Option("--role", "-r", help="observer, researcher, manager or admin.")
    ],
    labs: Annotated[
        list[str] | None, typer.Option("--lab", help="A lab they may use (repeat); default all.")
    ] = None,
    db: Path | None = DB_OPTION,
) -> None:
    """Add a user with a role."""
    with user_errors(), _store(db, create=True) as store:
        user = store.add_user(name, role, labs=labs or [])
        _audit(store, "user.add", name, role=role.value, labs=labs or [])
    console.print(f"user [bold]{user.name}[/] added as {user.role.value}")


@users_app.command("list")
def users_list(db: Path | None = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    """List users, their roles and labs."""
    with user_errors(), _store(db) as store:
        users = store.users()
    if as_json:
        console.print_json(json.dumps([u.model_dump(mode="json") for u in users]))
        return
    table = Table(title="users")
    for column in ("user", "role", "labs", "created", "disabled"):
        table.add_column(column)
    for u in users:
        table.add_row(
            u.name, u.role.value, ", ".join(u.labs) or "all", _when(u.created), str(u.disabled)
        )
    console.print(table)


@users_app.command("role")
def users_role(
    name: Annotated[str, typer.Argument(help="The user's name.")],
    role: Annotated[Role, typer.Argument(help="Their new role.")],
    db: Path | None = DB_OPTION,
) -> None:
    """Change a user's role."""
    with user_errors(), _store(db) as store:
        store.set_role(name, role)
        _audit(store, "user.update", name, role=role.value)
    console.print(f"user [bold]{name}[/] is now {role.value}")


@users_app.command("disable")
def users_disable(
    name: str = typer.Argument(..., help="The user's name."),
    enable: bool = typer.Option(False, "--enable", help="Enable the user again instead."),
    db: Path | None = DB_OPTION,
) -> None:
    """Disable a user: none of their tokens works any more (``--enable`` undoes it)."""
    with user_errors(), _store(db) as store:
        store.set_disabled(name, not enable)
        _audit(store, "user.update", name, disabled=not enable)
    console.print(f"user [bold]{name}[/] {'enabled' if enable else 'disabled'}")


@tokens_app.command("create")
def tokens_create(
    user: str = typer.Argument(..., help="The user the token belongs to."),
    description: str = typer.Option("", "--description", "-d", help="What the token is for."),
    db: Path | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a token for a user. It is printed once; only its hash is kept."""
    with user_errors(), _store(db) as store:
        token = store.create_token(user, description)
        _audit(store, "token.create", token.id, user=user)
    if as_json:
        console.print_json(token.model_dump_json())
        return
    console.print(f"token {token.id} for {user} (shown once; keep it safe):")
    print(token.token)


@tokens_app.command("list")
def tokens_list(
    user: str | None = typer.Option(None, "--user", "-u", help="Only this user's tokens."),
    db: Path | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """List tokens (never their secrets)."""
    with user_errors(), _store(db) as store:
        tokens = store.tokens(user)
    if as_json:
        console.print_json(json.dumps([t.model_dump(mode="json") for t in tokens]))
        return
    table = Table(title="tokens")
    for column in ("id", "user", "description", "created", "last used", "revoked"):
        table.add_column(column)
    for t in tokens:
        table.add_row(
            t.id, t.user, t.description, _when(t.created), _when(t.last_used), _when(t.revoked)
        )
    console.print(table)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: str = typer.Argument(..., help="The token's id (see 'remotelab tokens list')."),
    db: Path | None = DB_OPTION,
) -> None:
    """Revoke a token for good."""
    with user_errors(), _store(db) as store:
        store.revoke_token(token_id)
        _audit(store, "token.revoke", token_id)
    console.print(f"token {token_id} revoked")
