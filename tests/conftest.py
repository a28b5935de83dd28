"""Shared fixtures: thin names over the remotelab pytest plugin's (the shipped simulated lab
on a fast clock, a plain RunEngine, a run store, one real Prefect server for the session),
and no gateway configured from the environment."""

from __future__ import annotations

import pytest

from remotelab.testing import engine
from remotelab.testing.runner import close_engines

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def no_gateway_configured(monkeypatch, tmp_path_factory):
    """The CLI works on this machine unless a test configures a gateway: no REMOTELAB_URL,
    REMOTELAB_TOKEN or REMOTELAB_LAB from the environment, no login config file."""
    for name in ("REMOTELAB_URL", "REMOTELAB_TOKEN", "REMOTELAB_LAB"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path_factory.mktemp("client-config") / "client.toml"
    monkeypatch.setenv("REMOTELAB_CONFIG", str(config))


@pytest.fixture(scope="session", autouse=True)
def session_keys(tmp_path_factory):
    """remotelab's keys (submission signing, CURVE) in a directory of the session's, shared by
    the queues and workers the tests start, never the user's own."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REMOTELAB_KEYS_DIR", str(tmp_path_factory.mktemp("remotelab-keys")))
        yield


@pytest.fixture
def lab(remotelab_lab):
    """The shipped simulated lab, seed 42, at a high clock speed."""
    return remotelab_lab


@pytest.fixture
def RE():
    """A RunEngine with no store attached (tests subscribe what they need); ``.documents``."""
    return engine()


@pytest.fixture(autouse=True)
def engines_closed():
    """After each test, the RunEngines it made with ``remotelab.testing.engine`` end (their
    event loops closed): the session would otherwise run out of file descriptors."""
    yield
    close_engines()


@pytest.fixture
def store(remotelab_store):
    """An empty run store (with plots) in the test's directory."""
    return remotelab_store


@pytest.fixture(scope="session")
def prefect_api(remotelab_prefect) -> str:
    """A real ``prefect server start`` on SQLite (PREFECT_API_URL points at it)."""
    return remotelab_prefect.api_url
