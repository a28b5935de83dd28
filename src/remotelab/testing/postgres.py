"""A private PostgreSQL cluster for tests: its own data directory, a free port on loopback,
started and stopped by the test session (Debian's ``postgresql`` package or any
``initdb``/``pg_ctl`` on the PATH). As root, the cluster runs as the ``postgres`` user
(PostgreSQL refuses to run as root)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from remotelab.queue.server import free_port


def postgres_bin() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl``: on the PATH, else Debian's newest."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent  # beside createdb (a link on the PATH may not be)
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return Path(debian[-1]).parent if debian else None


def _version(path: str) -> float:
    try:
        return float(Path(path).parts[-3])
    except ValueError:
        return 0.0


class PostgresCluster:
    """``initdb`` in a fresh directory of its own (removed at :meth:`stop`), served on
    ``127.0.0.1:<free port>`` (trust on loopback only: a test cluster), with one database
    ``prefect``; :attr:`url` for Prefect. The directory is made in the system's temporary
    directory, which the ``postgres`` user can reach when the tests run as root."""

    def __init__(self, *, database: str = "prefect"):
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise FileNotFoundError(
                "PostgreSQL is not installed (no initdb on the PATH nor under "
                "/usr/lib/postgresql): apt install postgresql"
            )
        self.bin = bin_dir
        self.directory = Path(tempfile.mkdtemp(prefix="remotelab-postgres-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.database = database
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip()}")

    def start(self) -> PostgresCluster:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.directory} -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.directory / "log"),
            "-o", options, "-w", "start",
        )  # fmt: skip
        self._run(
            "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, self.database
        )
        return self

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["PostgresCluster", "postgres_bin"]
