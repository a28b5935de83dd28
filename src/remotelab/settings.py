"""remotelab's settings: where its data lives and how to reach its services.

Every setting has an environment variable; nothing here reads a config file.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """remotelab's data directory: ``$REMOTELAB_DATA_DIR``, else ``~/.local/share/remotelab``."""
    env = os.environ.get("REMOTELAB_DATA_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "remotelab"


def prefect_api_url() -> str | None:
    """The Prefect API remotelab uses: ``$REMOTELAB_PREFECT_API_URL``, else ``$PREFECT_API_URL``."""
    return os.environ.get("REMOTELAB_PREFECT_API_URL") or os.environ.get("PREFECT_API_URL") or None


__all__ = ["data_dir", "prefect_api_url"]
