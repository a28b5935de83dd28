"""The run store's disk full, for real (a small tmpfs mounted by the test): the experiment
fails saying so, the lab is held instead of failing everything queued, devices are safe, the
filling disk was reported, and the queue goes on once there is room and the lab is released.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

import pytest
from queue_helpers import WorkerThread, wait_until, write_lab
from rich.text import Text

from remotelab.cli import render
from remotelab.data import RunStore
from remotelab.lab import load_lab
from remotelab.queue import ExperimentQueue, ExperimentState

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (needs the right to mount: CI runs as root; skipped elsewhere)."""
    where = tmp_path / "small"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs in CI: {mounted.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory) -> int:
    """Fill the file system with a file until it is full; the bytes written."""
    written = 0
    with contextlib.suppress(OSError), open(directory / "filler", "wb", buffering=0) as f:
        while True:
            written += f.write(b"\0" * 4096)
    return written


def test_a_full_disk_under_the_store_holds_the_lab_and_burns_nothing(
    tmp_path, small_disk, prefect_api
):
    lab = load_lab(write_lab(tmp_path), speed=1000)
    store = RunStore(small_disk / "runs.sqlite", plots=False)
    queue = ExperimentQueue(lab, api_url=prefect_api)
    queue.ensure()
    w = WorkerThread(lab, prefect_api, store_path=store.path)
    for lane in w.worker.lanes:
        lane.RE.subscribe(store)
    try:
        first = queue.submit("steps", {"n": 3}, submitter="ada")
        assert queue.wait_for(first.id).state == ExperimentState.completed  # room: fine
        fill(small_disk)
        victim = queue.submit("steps", {"n": 50, "stir": 400}, submitter="ada")
        queued = [queue.submit("steps", {"n": 2}, submitter="ada") for _ in range(3)]
        failed = queue.wait_for(victim.id)
        assert failed.state == ExperimentState.failed
        assert "disk of the run store is full" in failed.message, failed.message
        assert "database or disk is full" in failed.message
        wait_until(queue.is_held, what="the lab held")
        alerts = wait_until(
            lambda: [a["message"] for a in w.worker._describe()["alerts"]],
            what="the worker's alerts",
        )
        assert any("held" in m and "disk" in m for m in alerts)
        wait_until(
            lambda: any("nearly full" in a["message"] for a in w.worker._describe()["alerts"]),
            what="the disk reported nearly full",
        )
        # what the gateway's lab summary, `remotelab lab` and the dashboard show
        shown = wait_until(
            lambda: [a for a in queue.alerts() if a["kind"] == "lab held"], what="it announced"
        )
        assert shown[0]["worker"] == w.worker.id and "disk" in shown[0]["message"]
        line = render.lab_summary(
            {
                "name": lab.name,
                "simulated": True,
                "held": True,
                "workers": 1,
                "queued": 3,
                "alerts": queue.alerts(),
            }
        )
        assert "HELD" in line and "! lab " in Text.from_markup(line).plain
        assert lab["stirrer"].setpoint.get() == 0  # left safe
        assert [queue.get(q.id).state for q in queued] == [ExperimentState.queued] * 3
        # room again, the manager releases the lab: the queue goes on
        (small_disk / "filler").unlink()
        queue.release()
        for q in queued:
            assert queue.wait_for(q.id).state == ExperimentState.completed
        wait_until(
            lambda: not any("held" in a["message"] for a in w.worker._describe()["alerts"]),
            what="the hold alert closed",
        )
    finally:
        w.stop()
        store.close()
        queue.close()
        lab.close()
        shutil.rmtree(small_disk / "plots", ignore_errors=True)
