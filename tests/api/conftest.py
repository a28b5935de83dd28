"""Fixtures of the gateway tests: a real Prefect server, and a site (simulated lab, queue,
run store with one stored run, users of every role, the gateway app) per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_helpers import Site, make_site

from remotelab.testing.plugin import DATABASES, prefect_on


@pytest.fixture(scope="session", params=DATABASES)
def prefect_api(request) -> str:
    """The gateway suite runs on Prefect's server on SQLite and on PostgreSQL (the browser
    tests, which look at the dashboard, not the database, on SQLite only: see their
    modules)."""
    return prefect_on(request, request.param).api_url


@pytest.fixture(scope="module")
def site(tmp_path_factory, prefect_api) -> Iterator[Site]:
    yield from make_site(tmp_path_factory.mktemp("site"), prefect_api)
