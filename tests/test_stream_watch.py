"""``remotelab watch EXPERIMENT`` follows a live run from the stream and exits when it stops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bluesky import RunEngine
from bluesky.plans import count

from remotelab.lab import load_lab
from remotelab.stream import DOC_PREFIX, StreamProxy, StreamPublisher

SRC = Path(__file__).resolve().parents[1] / "src"


def _watch(address: str, experiment: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "remotelab", "watch", experiment, "--stream", address, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "160", "TERM": "dumb"},
    )


def test_watch_shows_the_experiment_and_exits_at_stop():
    proxy = StreamProxy("tcp://127.0.0.1:*", "tcp://127.0.0.1:*").start()
    publisher = StreamPublisher(proxy.in_address, heartbeat=None)
    proc = _watch(proxy.out_address, "E-watch")
    try:
        publisher.wait_connected()
        proxy.wait_for_subscribers(1, DOC_PREFIX + b" ", timeout=30)
        RE = RunEngine({}, context_managers=[])
        RE.subscribe(publisher)
        with load_lab(speed=2000) as lab:
            RE(count([lab["thermometer"]], num=2), experiment_id="another")  # not shown
            (uid,) = RE(count([lab["thermometer"], lab["balance"]], num=5), experiment_id="E-watch")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        publisher.close()
        proxy.stop()
    assert proc.returncode == 0, err
    assert f"run {uid} success: 5 event(s)" in out
    assert "thermometer_temperature" in out and "balance_mass" in out
    assert "5/5" in out  # the progress bar, from num_points


def test_watch_gives_up_when_the_experiment_never_starts():
    proxy = StreamProxy("tcp://127.0.0.1:*", "tcp://127.0.0.1:*").start()
    try:
        proc = _watch(proxy.out_address, "E-never", "--timeout", "0.5")
        out, err = proc.communicate(timeout=60)
    finally:
        proxy.stop()
    assert proc.returncode == 2
    assert "did not start" in err
