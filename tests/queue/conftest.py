"""Fixtures of the queue tests: one real Prefect server for the session, a lab per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from queue_helpers import WorkerThread, write_lab

from remotelab.lab import load_lab
from remotelab.queue import ExperimentQueue
from remotelab.testing.plugin import DATABASES, prefect_on


@pytest.fixture(scope="session", params=DATABASES)
def prefect_api(request) -> str:
    """The queue suite runs on Prefect's server on SQLite and on PostgreSQL."""
    return prefect_on(request, request.param).api_url


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
    started: list[WorkerThread] = []

    def start(lab, **kwargs) -> WorkerThread:
        w = WorkerThread(lab, prefect_api, **kwargs)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()
