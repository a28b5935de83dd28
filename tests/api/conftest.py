"""Fixtures of the gateway tests: a real Prefect server, and a site (simulated lab, queue,
run store with one stored run, users of every role, the gateway app) per module."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from api_helpers import Site, make_site

from remotelab.queue.server import PrefectServer


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


@pytest.fixture(scope="module")
def site(tmp_path_factory, prefect_api) -> Iterator[Site]:
    yield from make_site(tmp_path_factory.mktemp("site"), prefect_api)
