"""Fixtures of the reliability tests: a real Prefect server (the session's), a lab per test,
worker processes to kill, workers on threads, and a gateway to watch them.

Faults are injected for real (a Prefect server killed and started again on its own database,
worker processes killed). Outages are shortened, not waited out: workers run with Prefect's
client retries off (``PREFECT_CLIENT_MAX_RETRIES=0``) and a retry cap of a second
(``REMOTELAB_RETRY_CAP``), so an outage of a few seconds takes the worker through every state
a long one does — Prefect's own retries exhausted, its back-off at the cap, records piling up
in the outbox.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "queue"))

from queue_helpers import WorkerThread, subprocess_env, wait_until, write_lab

from remotelab.lab import load_lab
from remotelab.queue import ExperimentQueue


@pytest.fixture
def lab_file(tmp_path) -> Path:
    return write_lab(tmp_path)


@pytest.fixture
def lab(lab_file):
    lab = load_lab(lab_file, speed=1000)
    yield lab
    lab.close()


@pytest.fixture
def exq(lab, prefect_api) -> Iterator[ExperimentQueue]:
    with ExperimentQueue(lab, api_url=prefect_api) as q:
        q.ensure()
        yield q


@pytest.fixture
def start_worker(prefect_api) -> Iterator[Callable[..., WorkerThread]]:
    """Workers on threads of the test process (stopped at the end)."""
    started: list[WorkerThread] = []

    def start(lab, **kwargs) -> WorkerThread:
        w = WorkerThread(lab, prefect_api, **kwargs)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def worker_process(lab_file, prefect_api, tmp_path, exq):
    """``start(docs)``: a ``remotelab worker`` process of the lab, writing its documents to
    ``docs`` (and its run store under ``tmp_path``); killed at the end if still running."""
    procs: list[subprocess.Popen] = []

    def start(docs: Path) -> subprocess.Popen:
        env = {**subprocess_env(prefect_api, tmp_path), "QUEUE_TEST_DOCS": str(docs)}
        log = open(tmp_path / f"worker{len(procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "remotelab",
                "worker",
                "--lab",
                str(lab_file),
                "--speed",
                "1000",
                "--poll",
                "0.5",
                "--stream",
                "none",
                "--subscriber",
                "queue_test_plans:jsonl_documents",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        procs.append(proc)
        wait_until(
            lambda: (
                any(w["pid"] == proc.pid for w in exq.workers(fresh=True))
                or proc.poll() is not None
            ),
            timeout=90,
            what="the worker to announce itself",
        )
        assert proc.poll() is None, (tmp_path / "worker0.log").read_text()[-2000:]
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
