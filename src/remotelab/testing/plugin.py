"""The ``remotelab`` pytest plugin: a lab's plans tested on its simulated lab.

Registered as the ``pytest11`` entry point ``remotelab``, so it loads in every pytest run
where remotelab is installed; importing it imports nothing but pytest (the fixtures import
remotelab, bluesky and Prefect when used).

Which lab (each setting from the first that gives it): the test's
``@pytest.mark.remotelab_lab(path=None, simulate=False, seed=42, speed=2000)``, the options
``--remotelab-lab PATH`` and ``--remotelab-simulate``, the ini settings ``remotelab_lab``
and ``remotelab_simulate``, else the shipped simulated lab. A marker's path is relative to
its test file, an option's to the directory pytest was started in, an ini setting's to the
configuration file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from bluesky import RunEngine

    from remotelab.client import Client
    from remotelab.data import RunStore
    from remotelab.embedded import Embedded
    from remotelab.lab import Lab
    from remotelab.queue.server import PrefectServer
    from remotelab.testing import LabChoice, PlanRunner

MARKER = "remotelab_lab"
#: fixtures that start a whole installation: tests using them are marked ``slow``
SLOW_FIXTURES = ("remotelab_site", "remotelab_client")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("remotelab", "remotelab: the lab of the remotelab_* fixtures")
    group.addoption(
        "--remotelab-lab",
        dest="remotelab_lab",
        metavar="PATH",
        default=None,
        help="lab file (or shipped lab name) of the remotelab fixtures (default: the "
        "remotelab_lab ini setting, else the shipped simulated lab)",
    )
    group.addoption(
        "--remotelab-simulate",
        dest="remotelab_simulate",
        action="store_true",
        default=None,
        help="load the lab file as its simulated twin: every device on its simulator",
    )
    parser.addini("remotelab_lab", "lab file of the remotelab fixtures (relative to this file)")
    parser.addini(
        "remotelab_simulate", "load remotelab_lab as its simulated twin", type="bool", default=False
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(path=None, simulate=False, seed=42, speed=2000): the lab of the remotelab "
        "fixtures in this test (a lab file, or a shipped lab's name)",
    )
    if not any(line.split(":")[0].strip() == "slow" for line in config.getini("markers")):
        config.addinivalue_line("markers", "slow: takes tens of seconds")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` the tests that start an installation, before ``-m`` selects."""
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in SLOW_FIXTURES):
            item.add_marker(pytest.mark.slow)


def lab_choice(request: pytest.FixtureRequest) -> LabChoice:
    """The lab the requesting test asks for (marker > options > ini > the shipped lab)."""
    from remotelab.testing import choose
    from remotelab.testing.choice import resolve

    config = request.config
    marker = request.node.get_closest_marker(MARKER)
    marked: dict[str, Any] = {}
    if marker is not None:
        marked = dict(marker.kwargs)
        if marker.args:
            marked.setdefault("path", marker.args[0])
        here = Path(str(request.node.path)).parent
        marked["path"] = resolve(marked.get("path"), here)
    ini_base = config.inipath.parent if config.inipath else config.rootpath
    return choose(
        marked,
        option_path=resolve(config.getoption("remotelab_lab"), config.invocation_params.dir),
        option_simulate=config.getoption("remotelab_simulate"),
        ini_path=resolve(config.getini("remotelab_lab") or None, ini_base),
        ini_simulate=bool(config.getini("remotelab_simulate")),
    )


@pytest.fixture
def remotelab_lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """The selected lab on the fast clock (seed 42), closed after the test."""
    with lab_choice(request).load() as lab:
        yield lab


@pytest.fixture
def remotelab_store(tmp_path: Path) -> Iterator[RunStore]:
    """An empty run store (``runs.sqlite``, with plots) in the test's directory."""
    from remotelab.data import RunStore

    with RunStore(tmp_path / "runs.sqlite") as store:
        yield store


@pytest.fixture
def remotelab_engine(remotelab_store: RunStore) -> Iterator[RunEngine]:
    """A RunEngine feeding ``remotelab_store`` first, as the worker's does; ``.documents``
    collects ``(name, doc)``; the holds of shared devices are served on a book of its own;
    its event loop is closed after the test."""
    from remotelab.plans.engine import close_engine
    from remotelab.testing import engine

    re = engine(store=remotelab_store)
    yield re
    close_engine(re)


@pytest.fixture
def run_plan(remotelab_lab: Lab, remotelab_engine: RunEngine) -> PlanRunner:
    """``run_plan(name, **params) -> PlanResult``: validated as a submission (as a manager;
    ``run_plan.as_role("researcher")`` for another role), run on ``remotelab_engine``
    against ``remotelab_lab``."""
    from remotelab.testing import PlanRunner

    return PlanRunner(remotelab_lab, remotelab_engine)


@pytest.fixture(scope="session")
def remotelab_prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A private Prefect server on SQLite for the whole session (``.api_url``);
    ``PREFECT_API_URL`` points at it while it runs, and ``REMOTELAB_KEYS_DIR`` (unless set)
    at a keys directory of the session's, shared by the queues and workers it starts."""
    from remotelab.queue.server import PrefectServer

    with (
        PrefectServer(tmp_path_factory.mktemp("remotelab-prefect")) as server,
        pytest.MonkeyPatch.context() as env,
    ):
        for name, value in server.client_env().items():
            env.setenv(name, value)
        if not os.environ.get("REMOTELAB_KEYS_DIR"):
            env.setenv("REMOTELAB_KEYS_DIR", str(tmp_path_factory.mktemp("remotelab-keys")))
        yield server


#: the databases Prefect's server can run on in a test session
DATABASES = ("sqlite", "postgresql")


def prefect_on(request: pytest.FixtureRequest, database: str) -> PrefectServer:
    """This session's Prefect server on ``database`` (one of :data:`DATABASES`): for a
    fixture parametrised over both, e.g. ``@pytest.fixture(params=DATABASES)``."""
    name = {"sqlite": "remotelab_prefect", "postgresql": "remotelab_prefect_postgres"}[database]
    server: PrefectServer = request.getfixturevalue(name)
    return server


@pytest.fixture(scope="session")
def remotelab_prefect_postgres(
    tmp_path_factory: pytest.TempPathFactory, remotelab_prefect: PrefectServer
) -> Iterator[PrefectServer]:
    """A second private Prefect server for the session, on PostgreSQL: a private cluster of
    its own (:class:`~remotelab.testing.postgres.PostgresCluster`, Debian's ``postgresql``),
    started and stopped here; it shares the SQLite server's auth string. Skipped when
    PostgreSQL is not installed, except under CI (``CI`` set), where that fails."""
    from remotelab.queue.server import PrefectServer
    from remotelab.testing.postgres import PostgresCluster, postgres_bin

    if postgres_bin() is None:
        if os.environ.get("CI"):
            pytest.fail(
                "PostgreSQL is not installed, and CI must run on it: apt install postgresql"
            )
        pytest.skip("PostgreSQL is not installed (apt install postgresql)")
    with (
        PostgresCluster() as cluster,
        PrefectServer(
            tmp_path_factory.mktemp("remotelab-prefect-postgres"),
            database=cluster.url,
            auth_string=remotelab_prefect.auth_string,
        ) as server,
    ):
        yield server


@pytest.fixture
def remotelab_site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Embedded]:
    """Slow: a whole installation on the selected lab (its own Prefect server, stream proxy,
    run store, worker and gateway, as ``remotelab demo``), stopped after the test. Its CURVE
    keys are made in its directory, unless ``REMOTELAB_KEYS_DIR`` is set."""
    import os

    from remotelab.embedded import Embedded
    from remotelab.queue.server import free_port

    choice = lab_choice(request)
    options = choice.load_options()
    site = Embedded(
        tmp_path / "remotelab-site",
        lab_file=Path(choice.path) if choice.path else None,
        port=free_port(),
        speed=options.pop("speed"),
        lab_options=options,
    )
    with pytest.MonkeyPatch.context() as env:
        if not os.environ.get("REMOTELAB_KEYS_DIR"):
            env.setenv("REMOTELAB_KEYS_DIR", str(tmp_path / "remotelab-site" / "keys"))
        with site:
            yield site


@pytest.fixture
def remotelab_client(remotelab_site: Embedded) -> Iterator[Client]:
    """Slow: a :class:`~remotelab.Client` of ``remotelab_site``'s gateway, logged in with
    the demo manager's token."""
    from remotelab.client import Client
    from remotelab.embedded import DEMO_USERS

    manager = next(user for user, role in DEMO_USERS.items() if role == "manager")
    with Client(remotelab_site.url, token=remotelab_site.tokens[manager]) as client:
        yield client
