"""Files remotelab keeps under its data directory are its user's only: the directories it
creates 0700, its databases (users and audit, runs, the outbox) and Prefect's auth string
0600."""

from __future__ import annotations

import stat
from pathlib import Path

from remotelab.api.auth import AuthStore
from remotelab.data import RunStore
from remotelab.worker.alerts import Alerts
from remotelab.worker.link import Link
from remotelab.worker.outbox import Outbox


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_stores_are_created_readable_by_their_user_only(tmp_path):
    data = tmp_path / "data"  # does not exist yet: remotelab makes it
    auth = AuthStore(data / "auth.sqlite")
    auth.record(actor="a", role="admin", action="lab.hold", status=200)
    runs = RunStore(data / "runs.sqlite", plots=False)
    box = Outbox(
        data / "outbox" / "lab.sqlite", owner="w", handlers={}, link=Link("Prefect", Alerts())
    )
    try:
        assert mode(data) == 0o700 and mode(data / "outbox") == 0o700
        for db in ("auth.sqlite", "runs.sqlite", "outbox/lab.sqlite"):
            assert mode(data / db) == 0o600, db
        for journal in data.glob("*-wal"):
            assert mode(journal) == 0o600, journal.name
    finally:
        box.close()
        runs.close()
        auth.close()


def test_a_directory_that_exists_is_left_as_it_is(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    RunStore(shared / "runs.sqlite", plots=False).close()
    assert mode(shared) == 0o755 and mode(shared / "runs.sqlite") == 0o600
