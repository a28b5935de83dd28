"""The ``remotelab`` command. Each module here adds one group of commands to ``app``."""

from __future__ import annotations

from remotelab.cli import audit as _audit  # noqa: F401  (registers commands)
from remotelab.cli import check as _check  # noqa: F401  (registers commands)
from remotelab.cli import commands as _commands  # noqa: F401  (registers commands)
from remotelab.cli import data as _data  # noqa: F401  (registers commands)
from remotelab.cli import data_commands as _data_commands  # noqa: F401  (registers commands)
from remotelab.cli import gateway as _gateway  # noqa: F401  (registers commands)
from remotelab.cli import keys as _keys  # noqa: F401  (registers commands)
from remotelab.cli import lab as _lab  # noqa: F401  (registers commands)
from remotelab.cli import lab_commands as _lab_commands  # noqa: F401  (registers commands)
from remotelab.cli import notify_commands as _notify_commands  # noqa: F401  (registers commands)
from remotelab.cli import plans as _plans  # noqa: F401  (registers commands)
from remotelab.cli import queue as _queue  # noqa: F401  (registers commands)
from remotelab.cli import remote as _remote  # noqa: F401  (registers commands)
from remotelab.cli import sim_instrument as _sim_instrument  # noqa: F401  (registers commands)
from remotelab.cli import users as _users  # noqa: F401  (registers commands)
from remotelab.cli.app import app, console, err_console


def main() -> None:
    """Entry point of the ``remotelab`` console script. A usage error (an unknown command or
    option, a value outside an option's choices) is one line on stderr, exit status 2."""
    import sys

    import typer

    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="remotelab", standalone_mode=False)
    except typer.Abort:
        err_console.print("aborted", markup=False)
        sys.exit(1)
    except typer.TyperException as exc:  # click's usage and parameter errors
        ctx = getattr(exc, "ctx", None)
        where = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
        message = str(getattr(exc, "format_message", exc.__str__)())
        message = message.replace("Value error, ", "").rstrip(".")
        err_console.print(f"error: {message}{where}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(int(getattr(exc, "exit_code", 2)))
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "console", "main"]
