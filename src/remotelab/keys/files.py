"""The keys directory and the private files in it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from remotelab.settings import get_settings, private_dir


def keys_dir() -> Path:
    """remotelab's keys directory (``REMOTELAB_KEYS_DIR``, else ``keys`` in the data
    directory), made readable by this user only (0700) if remotelab creates it."""
    return private_dir(get_settings().keys_path)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file ``path`` readable by this user only (0600); an existing
    file is replaced only once the new one is complete."""
    private_dir(path.parent)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def is_private(path: Path) -> bool:
    """Whether ``path`` can be read by its owner only (no group or other permissions)."""
    return path.stat().st_mode & 0o077 == 0


__all__ = ["is_private", "keys_dir", "write_private"]
