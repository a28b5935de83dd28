"""``remotelab keys``: the CurveZMQ keys of the control channel and the live stream, and
the submission key that signs what the gateway accepted.

They work on this machine's keys directory (``REMOTELAB_KEYS_DIR``, else ``keys`` in the data
directory; see :mod:`remotelab.keys.curve` and :mod:`remotelab.keys.signing`): its own
keypairs, made on first use, the allowlist of the peers it lets in and trusts, and the
submission keys its workers trust.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from remotelab.cli.app import app, console, user_errors

keys_app = typer.Typer(
    rich_markup_mode=None,
    help="Keys: CurveZMQ keys of the control channel and the stream (list, new, allow, "
    "revoke) and the submission key (submission, rotate-submission, forget-submission).",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")

WATCH = typer.Option(
    False, "--watch", help="Allowed to read the stream only (not to command or publish)."
)
ACCESS = {"all": "everything", "watch": "watch the stream", "none": "nothing"}


def _keys():
    from remotelab.keys.curve import CurveKeys

    return CurveKeys()


@keys_app.command("list")
def list_keys(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """This machine's keypairs, then the other keys it allows, with what each may do here."""
    with user_errors():
        keys = _keys()
        entries = keys.entries()
    if as_json:
        rows = [{**asdict(e), "path": str(e.path)} for e in entries]
        console.print_json(json.dumps({"directory": str(keys.root), "keys": rows}))
        return
    console.print(
        f"CURVE keys in {keys.root} (this machine's public key files: NAME.key there)",
        markup=False,
        highlight=False,
    )
    table = Table("name")
    table.add_column("public key", no_wrap=True, min_width=40)  # whole, to be copied
    for column in ("whose", "may here", "files"):
        table.add_column(column)
    for e in entries:
        table.add_row(
            Text(e.name),
            Text(e.public),  # Z85 has brackets: never markup
            "this machine" if e.own else "a peer",
            ACCESS[e.access],
            "0600" if e.private else "readable by others",
            style=None if e.private else "red",
        )
    console.print(table)


@keys_app.command("new")
def new(
    name: str = typer.Argument(..., help="Its name: stream-proxy, worker-LAB, client or yours."),
    watch: bool = WATCH,
    replace: bool = typer.Option(
        False, "--replace", help="Rotate: a new keypair in place of the old one, which is revoked."
    ),
) -> None:
    """Make a keypair here (0600) and allow it; print its public key for the peers."""
    with user_errors():
        keys = _keys()
        pair = keys.new(name, watch=watch, replace=replace)
    console.print(f"{name}: {pair.public.decode()}", markup=False, highlight=False)
    console.print(
        f"public key file: {keys.public_path(name)} (give it, or the key, to the peers that "
        f"must trust it: remotelab keys allow FILE)",
        markup=False,
        highlight=False,
    )


@keys_app.command("allow")
def allow(
    key: str = typer.Argument(..., help="A public key file (NAME.key) or the 40-character key."),
    name: str | None = typer.Option(
        None, "--name", help="The name it is allowed as (default: the file's name)."
    ),
    watch: bool = WATCH,
) -> None:
    """Allow a peer's public key (in place of any of that name): a worker or a gateway of
    another machine, the stream proxy's (as stream-proxy), or a watcher's (--watch)."""
    from remotelab.keys.curve import CurveKeyError, load_public

    with user_errors():
        path = Path(key).expanduser()
        label: str | None = None
        if path.is_file():
            public, label = load_public(path), path.stem
        elif len(key.strip()) == 40:
            public = key.strip().encode()
        else:
            raise CurveKeyError(f"{key!r} is neither a key file nor a 40-character key")
        if not (name or label):
            raise CurveKeyError("name the key with --name")
        where = _keys().allow(name or label or "", public, watch=watch)
    what = "to watch the stream" if watch else "everything"
    console.print(f"allowed {name or label} ({what}): {where}", markup=False, highlight=False)


@keys_app.command("revoke")
def revoke(name: str = typer.Argument(..., help="The name it is allowed as.")) -> None:
    """Take a key off the allowlist: new connections with it are refused (restart the
    servers to cut those already open)."""
    from remotelab.keys.curve import CurveKeyError

    with user_errors():
        if not _keys().revoke(name):
            raise CurveKeyError(f"no key is allowed as {name} (see remotelab keys list)")
    console.print(f"revoked {name}", markup=False, highlight=False)


@keys_app.command("submission")
def submission(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The submission keys this machine's workers trust (current and retired), and whether
    it holds the private key that signs (the lab host does)."""
    from remotelab.keys.files import keys_dir
    from remotelab.keys.signing import PRIVATE_FILE, trusted_keys

    with user_errors():
        directory = keys_dir()
        found = trusted_keys(directory)
        signs = (directory / PRIVATE_FILE).exists()
    if as_json:
        rows = [{"key_id": k, "file": f, "current": c} for k, f, c in found]
        console.print_json(json.dumps({"directory": str(directory), "signs": signs, "keys": rows}))
        return
    console.print(
        f"submission keys in {directory}"
        + (" (this machine signs: it holds submission.key)" if signs else ""),
        markup=False,
        highlight=False,
    )
    table = Table("key id", "file", "state")
    for kid, file, current in found:
        table.add_row(Text(kid), Text(file), "current" if current else "retired, still trusted")
    console.print(table)


@keys_app.command("rotate-submission")
def rotate_submission() -> None:
    """Make a new submission key pair; the old public key stays trusted (retired) until
    forget-submission. Copy the new submission.pub to the workers' machines."""
    from remotelab.keys.files import keys_dir
    from remotelab.keys.signing import PUBLIC_FILE, rotate_signing_key

    with user_errors():
        directory = keys_dir()
        old, made = rotate_signing_key(directory)
    console.print(
        f"new submission key {made}; {old} is retired, still trusted. Copy "
        f"{directory / PUBLIC_FILE} to each worker's keys directory, and restart the "
        f"gateway; once nothing signed by {old} waits: remotelab keys forget-submission {old}",
        markup=False,
        highlight=False,
    )


@keys_app.command("forget-submission")
def forget_submission(
    key_id: str = typer.Argument(..., help="The retired key's id (remotelab keys submission)."),
) -> None:
    """Stop trusting a retired submission key: runs it signed are refused from now on."""
    from remotelab.keys.signing import forget_key

    with user_errors():
        path = forget_key(key_id)
    console.print(f"forgot {key_id} ({path.name})", markup=False, highlight=False)
