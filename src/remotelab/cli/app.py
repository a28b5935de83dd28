"""The typer application every command module registers on, and shared CLI helpers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from remotelab.errors import RemotelabError
from remotelab.version import __version__

app = typer.Typer(
    name="remotelab",
    help="Automated and remote laboratory research: plans, queue, devices and data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help and usage errors as plain text: no user text read as markup
)
console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"remotelab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """remotelab: submit, run and watch experiments on a (simulated) lab."""


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn remotelab's typed errors, and a service that cannot be reached, into a one-line
    message and exit code 2."""
    import httpx

    try:
        yield
    except RemotelabError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    except httpx.TransportError as exc:
        url = exc.request.url if _has_request(exc) else None
        where = f" at {url.scheme}://{url.netloc.decode()}" if url is not None else ""
        err_console.print(
            f"[bold red]error:[/] cannot reach the service{escape(where)}: {escape(str(exc))}",
            soft_wrap=True,
        )
        raise typer.Exit(2) from None


def _has_request(exc: Exception) -> bool:
    try:
        return getattr(exc, "request", None) is not None
    except RuntimeError:  # httpx raises when the error carries no request
        return False
