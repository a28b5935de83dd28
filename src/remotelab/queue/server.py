"""The embedded Prefect server: ``prefect server start`` on SQLite under remotelab's data directory.

Its API is closed to anyone without its auth string (Prefect's own
``PREFECT_SERVER_API_AUTH_STRING``): generated at the first start, kept in ``api_auth_string``
in the server's home (mode 0600), and passed to remotelab's Prefect clients (see
:func:`auth_string`); cross-origin requests are allowed from the server's own UI only and
Prefect's CSRF protection is on.

For a real deployment point remotelab at an existing Prefect API (PostgreSQL-backed) instead;
:func:`prefect_env` gives the settings either way.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from remotelab.errors import QueueError
from remotelab.settings import private_dir

#: settings that keep an embedded SQLite server healthy under a large backlog
EMBEDDED_SERVER_SETTINGS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
    "PREFECT_UI_ENABLED": "true",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}


#: the file in a server's home holding its API auth string
AUTH_FILE = "api_auth_string"


def load_or_make_auth_string(home: Path) -> str:
    """The auth string of the server whose home is ``home``: ``PREFECT_API_AUTH_STRING`` if
    set (every server of this process and its clients then share it), else the one kept in
    its home, else a new random one, kept there readable by this user only (0600)."""
    given = os.environ.get("PREFECT_API_AUTH_STRING")
    if given:
        return given
    path = home / AUTH_FILE
    if path.exists():
        return path.read_text().strip()
    private_dir(home)
    made = f"remotelab:{secrets.token_urlsafe(32)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(made + "\n")
    return made


#: the database URLs Prefect's server takes
DATABASE_SCHEMES = ("postgresql+asyncpg://", "sqlite+aiosqlite://")


def check_database_url(url: str) -> str:
    """``url`` if Prefect's server can use it; :class:`QueueError` saying what it takes."""
    if not url.startswith(DATABASE_SCHEMES):
        raise QueueError(
            f"Prefect's database must be a postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB "
            f"(or sqlite+aiosqlite:///FILE) URL, not {without_password(url)!r}"
        )
    return url


def without_password(url: str) -> str:
    """A database URL with its password replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    creds, at, place = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{place}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_healthy(api_url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until ``{api_url}/health`` answers; :class:`QueueError` if it does not in time."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise QueueError(
                f"the Prefect server exited with code {proc.returncode} while starting"
            )
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise QueueError(f"the Prefect API at {api_url} did not answer within {timeout:.0f} s ({last})")


class PrefectServer:
    """A ``prefect server start`` subprocess with its own PREFECT_HOME (SQLite database).

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        home: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        log: Path | str | None = None,
        auth_string: str | None = None,
        cors_origins: str | None = None,
        database: str | None = None,
    ):
        self.home = Path(home)
        #: Prefect's database (``postgresql+asyncpg://…``); None: SQLite in ``home``
        self.database = check_database_url(database) if database else None
        self.host = host
        self.port = port or free_port(host)
        self.log = Path(log) if log else self.home / "server.log"
        self.proc: subprocess.Popen | None = None
        #: what every client must send (HTTP Basic); see :func:`load_or_make_auth_string`
        self.auth_string = auth_string or load_or_make_auth_string(self.home)
        #: the web origins allowed to call the API from a browser (default: its own UI)
        self.cors_origins = cors_origins or self.ui_url

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment of the server process."""
        return {
            **os.environ,
            **EMBEDDED_SERVER_SETTINGS,
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_API_HOST": self.host,
            "PREFECT_SERVER_API_PORT": str(self.port),
            "PREFECT_SERVER_API_AUTH_STRING": self.auth_string,
            "PREFECT_API_AUTH_STRING": self.auth_string,  # its own services' client
            "PREFECT_SERVER_CORS_ALLOWED_ORIGINS": self.cors_origins,
            "PREFECT_SERVER_CSRF_PROTECTION_ENABLED": "true",
            # its schema is created or migrated as the server starts
            **({"PREFECT_SERVER_DATABASE_CONNECTION_URL": self.database} if self.database else {}),
        }

    @property
    def database_label(self) -> str:
        """Where its database is, for people: the URL without its password, or the file."""
        if self.database is None:
            return str(self.home / "prefect.db")
        return without_password(self.database)

    def client_env(self) -> dict[str, str]:
        """What a remotelab process needs to use this server: its API URL and auth string."""
        return {"PREFECT_API_URL": self.api_url, "PREFECT_API_AUTH_STRING": self.auth_string}

    def start(self, timeout: float = 90.0) -> PrefectServer:
        """Start the server and wait until it answers. This process's Prefect clients (and
        the processes it starts) get its auth string through ``PREFECT_API_AUTH_STRING``
        unless that is set already."""
        private_dir(self.home)  # Prefect's database and the auth string: this user's only
        os.environ.setdefault("PREFECT_API_AUTH_STRING", self.auth_string)
        out = open(self.log, "ab")  # noqa: SIM115 (kept open for the child's lifetime)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                self.host,
                "--port",
                str(self.port),
            ],
            env=self.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        try:
            wait_healthy(self.api_url, timeout, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def wait(self) -> int:
        """Block until the server exits; its exit code."""
        return self.proc.wait() if self.proc else 0

    def __enter__(self) -> PrefectServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
