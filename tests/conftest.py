"""Shared fixtures: the shipped simulated lab on a fast clock, a plain RunEngine, a run store,
and one real Prefect server for the whole session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from bluesky import RunEngine

from remotelab.lab import load_lab
from remotelab.plans.holds import install_local_holds
from remotelab.queue.server import PrefectServer

#: clock speed for tests: simulated minutes pass in tens of milliseconds
FAST = 2000.0


@pytest.fixture(autouse=True)
def no_gateway_configured(monkeypatch, tmp_path_factory):
    """The CLI works on this machine unless a test configures a gateway: no REMOTELAB_URL,
    REMOTELAB_TOKEN or REMOTELAB_LAB from the environment, no login config file."""
    for name in ("REMOTELAB_URL", "REMOTELAB_TOKEN", "REMOTELAB_LAB"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path_factory.mktemp("client-config") / "client.toml"
    monkeypatch.setenv("REMOTELAB_CONFIG", str(config))


@pytest.fixture
def lab():
    """The shipped simulated lab, seed 42, at a high clock speed."""
    with load_lab(speed=FAST) as the_lab:
        yield the_lab


@pytest.fixture
def RE():
    """A RunEngine that needs no main thread and no signal handlers; collects its documents."""
    engine = RunEngine({}, context_managers=[])
    install_local_holds(engine)
    engine.documents = []
    engine.subscribe(lambda name, doc: engine.documents.append((name, doc)))
    return engine


@pytest.fixture
def store(tmp_path):
    """An empty run store (with plots) in the test's directory."""
    from remotelab.data import RunStore

    with RunStore(tmp_path / "runs.sqlite") as the_store:
        yield the_store


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory) -> Iterator[str]:
    """A real ``prefect server start`` on SQLite in a temporary PREFECT_HOME."""
    home = tmp_path_factory.mktemp("prefect-home")
    with PrefectServer(home) as server:
        old = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = server.api_url
        yield server.api_url
        if old is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = old
