"""The run seal key: a secret outside the run store, so that rewriting a run's documents and
its hashes together is still found.

The run store seals each finished run's record hash (which covers its documents' hash) with
an HMAC-SHA256 under this key; someone who can write the database but not read the keys
directory cannot make a matching seal.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from remotelab.keys.files import is_private, keys_dir, write_private

SEAL_FILE = "runs.seal"


def seal_key_id(key: bytes) -> str:
    """A seal key's short name (16 hex digits; it reveals nothing of the key)."""
    return hashlib.sha256(b"remotelab run seal\0" + key).hexdigest()[:16]


def load_seal_key(directory: Path | None = None, *, make: bool = False) -> bytes | None:
    """The run seal key of ``directory`` (default: the keys directory); with ``make``, a new
    random one is made (readable by this user only) if there is none, else None."""
    directory = directory or keys_dir()
    path = directory / SEAL_FILE
    if not path.exists():
        if not make:
            return None
        write_private(path, secrets.token_hex(32).encode())
    if not is_private(path):
        raise PermissionError(f"{path.name} can be read by others; make it 0600 (chmod 600)")
    return bytes.fromhex(path.read_text().strip())


def seal(key: bytes, record_hash: str) -> str:
    """The seal of a run's record hash: ``<key id>:<HMAC-SHA256 hex>``."""
    mac = hmac.new(key, record_hash.encode(), hashlib.sha256).hexdigest()
    return f"{seal_key_id(key)}:{mac}"


def check_seal(key: bytes | None, record_hash: str, stored: str) -> bool | None:
    """Whether ``stored`` is the seal of ``record_hash`` under ``key``; None if it was made
    with a key this machine does not hold (it cannot be checked here)."""
    kid = stored.partition(":")[0]
    if key is None or kid != seal_key_id(key):
        return None
    return hmac.compare_digest(seal(key, record_hash), stored)


__all__ = ["SEAL_FILE", "check_seal", "load_seal_key", "seal", "seal_key_id"]
