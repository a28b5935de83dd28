"""The dashboard of a lab whose file says ``visibility: own``, in a real headless Chromium
against a real gateway and worker: a researcher's page shows her own experiments only, while
another researcher's runs (its device busy, by no one named); the manager's shows it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import yaml
from api_helpers import free_port, write_lab
from browser_helpers import TIMEOUT, chromium, sign_in, signed_in_as, until, visible
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from remotelab import Client
from remotelab.embedded import Embedded
from remotelab.queue import ExperimentState

LONG = {"detectors": ["thermometer"], "num": 10_000}
SHORT = {"detectors": ["balance"], "num": 2}


@pytest.fixture(scope="session")
def prefect_api(remotelab_prefect) -> str:
    """The dashboard on SQLite only: what it shows does not depend on Prefect's database."""
    return remotelab_prefect.api_url


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Iterator[WebDriver]:
    with chromium(tmp_path_factory.mktemp("chromium")) as browser:
        yield browser


@pytest.fixture(scope="module")
def site(tmp_path_factory, prefect_api) -> Iterator[Embedded]:
    """Gateway, worker and run store of a lab that shows experiments to their submitters
    only; researchers alice and bob."""
    tmp = tmp_path_factory.mktemp("own-dashboard")
    lab_file = write_lab(tmp, visibility="own")
    assert yaml.safe_load(lab_file.read_text())["visibility"] == "own"
    with Embedded(tmp, lab_file=lab_file, port=free_port(), speed=1000, api_url=prefect_api) as s:
        for user in ("alice", "bob"):
            s.auth.add_user(user, "researcher")
            s.tokens[user] = s.auth.create_token(user).token
        yield s


def reaches(client: Client, experiment_id: str, state: ExperimentState) -> bool:
    """Whether the experiment reaches ``state`` within the timeout (asked as it goes)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if client.experiment(experiment_id).state == state:
            return True
        time.sleep(0.1)
    return False


def state_of_device(d: WebDriver, name: str) -> str | None:
    rows = d.find_elements(By.CSS_SELECTOR, f'#devices tr[data-device="{name}"]')
    return rows[0].get_attribute("data-state") if rows else None


def test_a_researchers_page_shows_only_her_own_experiments(driver, site):
    with (
        Client(site.url, site.tokens["bob"]) as bob,
        Client(site.url, site.tokens["alice"]) as alice,
        Client(site.url, site.tokens["demo-manager"]) as manager,
    ):
        theirs = bob.submit("measure", LONG)
        try:
            assert reaches(bob, theirs.id, ExperimentState.running)
            hers = alice.submit("measure", SHORT)
            assert hers.wait(timeout=TIMEOUT).state == ExperimentState.completed

            sign_in(driver, site.url, site.tokens["alice"])
            signed_in_as(driver, "alice · researcher")
            visible(driver, f'#finished tr[data-id="{hers.id}"]', "her finished experiment")
            # one refresh reads the devices, the queue and what runs: bob's thermometer busy
            until(driver, lambda d: state_of_device(d, "thermometer") == "busy", "busy")
            assert not driver.find_elements(By.CSS_SELECTOR, f'[data-id="{theirs.id}"]')
            assert theirs.id[:8] not in driver.page_source
            note = driver.find_element(By.CSS_SELECTOR, "#lab-held .own").text
            assert "your own experiments only" in note

            sign_in(driver, site.url, site.tokens["demo-manager"])
            signed_in_as(driver, "demo-manager · manager")
            visible(driver, f'#running .run-card[data-id="{theirs.id}"]', "bob's card")
            assert not driver.find_elements(By.CSS_SELECTOR, "#lab-held .own")
        finally:
            manager.cancel(theirs.id)
        assert theirs.wait(timeout=TIMEOUT).state == ExperimentState.cancelled
