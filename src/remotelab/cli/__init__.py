"""The ``remotelab`` command. Each module here adds one group of commands to ``app``."""

from __future__ import annotations

from remotelab.cli import audit as _audit  # noqa: F401  (registers commands)
from remotelab.cli import check as _check  # noqa: F401  (registers commands)
from remotelab.cli import commands as _commands  # noqa: F401  (registers commands)
from remotelab.cli import data as _data  # noqa: F401  (registers commands)
from remotelab.cli import data_commands as _data_commands  # noqa: F401  (registers commands)
from remotelab.cli import gateway as _gateway  # noqa: F401  (registers commands)
from remotelab.cli import lab as _lab  # noqa: F401  (registers commands)
from remotelab.cli import lab_commands as _lab_commands  # noqa: F401  (registers commands)
from remotelab.cli import notify_commands as _notify_commands  # noqa: F401  (registers commands)
from remotelab.cli import plans as _plans  # noqa: F401  (registers commands)
from remotelab.cli import queue as _queue  # noqa: F401  (registers commands)
from remotelab.cli import remote as _remote  # noqa: F401  (registers commands)
from remotelab.cli import sim_instrument as _sim_instrument  # noqa: F401  (registers commands)
from remotelab.cli import users as _users  # noqa: F401  (registers commands)
from remotelab.cli.app import app, console


def main() -> None:
    """Entry point of the ``remotelab`` console script."""
    app()


__all__ = ["app", "console", "main"]
