"""remotelab's settings, read from ``REMOTELAB_*`` environment variables.

Only what several parts of remotelab share lives here: where data is kept, where the
live stream is published, and which Prefect API the queue uses. Nothing here reads a
config file.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("remotelab", appauthor=False))


class Settings(BaseSettings):
    """Settings from the environment: ``REMOTELAB_DATA_DIR``, ``REMOTELAB_STREAM_IN`` …"""

    model_config = SettingsConfigDict(env_prefix="REMOTELAB_", extra="ignore")

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Directory holding the run store, its plots and the embedded Prefect server.",
    )
    stream_in: str = Field(
        "tcp://127.0.0.1:5577",
        description="Address the stream proxy takes documents in on (publishers connect).",
    )
    stream_out: str = Field(
        "tcp://127.0.0.1:5578",
        description="Address the stream proxy sends documents out on (subscribers connect).",
    )
    prefect_api_url: str | None = Field(
        None,
        description="Prefect API of the queue (else $PREFECT_API_URL, else the embedded server).",
    )
    prefect_database: str | None = Field(
        None,
        description="The embedded Prefect server's database (postgresql+asyncpg://USER:"
        "PASSWORD@HOST:PORT/DB); else SQLite under <data dir>/prefect.",
    )
    prefect_auth_string: str | None = Field(
        None,
        description="The Prefect API's auth string (else $PREFECT_API_AUTH_STRING, else the "
        "embedded server's, kept in <data dir>/prefect/api_auth_string).",
    )
    auth_failures: int = Field(
        10,
        ge=1,
        description="Failed authentications one address may make in a minute before the "
        "gateway answers it 429 for the rest of that minute.",
    )
    max_body: int = Field(
        1 << 20,
        ge=1024,
        description="Largest request body (bytes) the gateway takes; larger ones get 413.",
    )
    max_json_depth: int = Field(
        32, ge=4, le=512, description="Deepest nesting of a JSON body the gateway takes (422)."
    )
    retry_cap: float = Field(
        15.0,
        gt=0,
        description="Longest wait (s) of a worker between two tries while Prefect is unreachable.",
    )
    worker_lost_after: float = Field(
        60.0,
        gt=0,
        description="Seconds a worker's heartbeat may stay silent before the gateway or a peer "
        "worker marks it lost (its experiments Crashed, its devices freed).",
    )

    keys_dir: Path | None = Field(
        None,
        description="Directory of remotelab's keys: the submission signing key and the "
        "control channel's and stream's CURVE keys (else <data dir>/keys).",
    )

    @property
    def keys_path(self) -> Path:
        """Where remotelab's keys are kept (``keys_dir``, else ``keys`` in the data dir)."""
        return (self.keys_dir or self.data_dir / "keys").expanduser()

    @property
    def store_path(self) -> Path:
        """The run store's database file."""
        return self.data_dir / "runs.sqlite"

    def outbox_path(self, lab: str) -> Path:
        """The file a worker of ``lab`` keeps what it must still tell Prefect in."""
        return self.data_dir / "outbox" / f"{lab}.sqlite"


def get_settings() -> Settings:
    """The settings as the environment gives them now."""
    return Settings()


def private_dir(path: Path) -> Path:
    """Make directory ``path`` (and its missing parents) readable by this user only (0700)
    where remotelab creates it; one that exists is left as it is."""
    missing = [p for p in [path, *path.parents] if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for made in missing:
        with contextlib.suppress(OSError):
            made.chmod(0o700)
    return path


def private_file(path: Path) -> None:
    """Create the (SQLite) file ``path`` readable by this user only (0600), before it is
    opened: SQLite gives its journal files the database file's mode. A file that exists is
    left as it is."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def data_dir() -> Path:
    """remotelab's data directory: ``$REMOTELAB_DATA_DIR``, else the user data directory."""
    return get_settings().data_dir.expanduser()


def demo_data_dir() -> Path:
    """Where ``remotelab demo`` keeps its data by default: ``demo`` in the data directory."""
    return data_dir() / "demo"


def worker_lost_after() -> float:
    """Seconds of silent heartbeat after which a worker is lost: ``$REMOTELAB_WORKER_LOST_AFTER``
    (default 60)."""
    return get_settings().worker_lost_after


def prefect_api_url() -> str | None:
    """The Prefect API remotelab uses: ``$REMOTELAB_PREFECT_API_URL``, else ``$PREFECT_API_URL``."""
    return get_settings().prefect_api_url or os.environ.get("PREFECT_API_URL") or None


__all__ = [
    "Settings",
    "data_dir",
    "demo_data_dir",
    "get_settings",
    "prefect_api_url",
    "worker_lost_after",
]
