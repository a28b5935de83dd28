"""The lab manager's dashboard in a real headless Chromium, against a real gateway, Prefect
server and worker on the simulated lab: sign in, watch the queue, hold and release the lab,
cancel and approve experiments with the page's buttons. What the buttons did is checked in
the real queue through the Python client, never on the page alone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_helpers import free_port, write_lab
from browser_helpers import TIMEOUT, chromium, click, sign_in, signed_in_as, until
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as EC

from remotelab import Client
from remotelab.embedded import Embedded
from remotelab.queue import ExperimentState

MEASURE = {"detectors": ["thermometer"], "num": 2}
SCAN = {"detectors": ["thermometer"], "motor": "stirrer", "start": 0, "stop": 100, "num": 2}


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
    """Gateway, stream proxy, run store and a worker on the simulated lab (whose researchers'
    scans wait for approval); users alice (researcher) and olga (observer)."""
    tmp = tmp_path_factory.mktemp("dashboard")
    lab_file = write_lab(tmp)
    with Embedded(tmp, lab_file=lab_file, port=free_port(), speed=1000, api_url=prefect_api) as s:
        for user, role in (("alice", "researcher"), ("olga", "observer")):
            s.auth.add_user(user, role)
            s.tokens[user] = s.auth.create_token(user).token
        yield s


@pytest.fixture
def manager(site) -> Iterator[Client]:
    with Client(site.url, site.tokens["demo-manager"]) as c:
        yield c
        if c.lab()["held"]:
            c.release()  # leave the lab open for the next test, whatever happened


@pytest.fixture
def alice(site) -> Iterator[Client]:
    with Client(site.url, site.tokens["alice"]) as c:
        yield c


def row(driver: WebDriver, table: str, experiment_id: str, state: str) -> tuple[str, list[str]]:
    """The text and buttons of an experiment's row in ``table`` (queue or finished), once it
    shows ``state``."""
    selector = f'#{table} tr[data-id="{experiment_id}"][data-state="{state}"]'

    def shown(d: WebDriver) -> tuple[str, list[str]] | None:
        found = d.find_elements(By.CSS_SELECTOR, selector)
        if not found:
            return None
        buttons = found[0].find_elements(By.TAG_NAME, "button")
        return found[0].text, [b.get_attribute("data-action") for b in buttons]

    return until(driver, shown, f"experiment {experiment_id} {state} in the {table} table")


def click_row_action(driver: WebDriver, experiment_id: str, action: str) -> None:
    selector = f'#queue tr[data-id="{experiment_id}"] button[data-action="{action}"]'
    click(driver, selector, f"{action} {experiment_id}")


def control(driver: WebDriver, action: str) -> None:
    click(driver, f'#lab-controls button[data-control="{action}"]', action)


def state_of(client: Client, experiment_id: str) -> ExperimentState:
    return client.experiment(experiment_id).state


def test_the_gateway_serves_the_page_without_a_token(site):
    root = httpx.get(site.url + "/", follow_redirects=False)
    assert root.status_code in (302, 307) and root.headers["location"] == "/dashboard"
    page = httpx.get(site.dashboard_url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset in ("dashboard.js", "dashboard.css"):
        assert f"/dashboard/static/{asset}" in page.text
        assert httpx.get(f"{site.url}/dashboard/static/{asset}").status_code == 200
    # the data is not open: the API still wants a token
    assert httpx.get(f"{site.url}/api/v1/labs").status_code == 401


def test_a_bad_token_shows_the_gateways_answer(driver, site):
    bad = "rl_0123456789ab_" + "x" * 43
    sign_in(driver, site.url, bad)
    error = until(
        driver, EC.visibility_of_element_located((By.ID, "login-error")), "a sign-in error"
    )
    answer = httpx.get(f"{site.url}/api/v1/whoami", headers={"Authorization": f"Bearer {bad}"})
    assert answer.status_code == 401
    assert error.text == answer.json()["detail"] == "unknown API token"
    assert not driver.find_element(By.ID, "lab-view").is_displayed()


def test_manager_watches_and_steers_the_queue(driver, site, manager, alice):
    sign_in(driver, site.url, site.tokens["demo-manager"])
    signed_in_as(driver, "demo-manager · manager")

    # the lab's devices, each held by the live worker and idle
    def devices(d: WebDriver) -> dict[str, str]:
        rows = d.find_elements(By.CSS_SELECTOR, "#devices tbody tr")
        return {r.get_attribute("data-device"): r.text.split()[-1] for r in rows}

    expected = dict.fromkeys(site.lab.describe()["devices"], "idle")
    until(driver, lambda d: devices(d) == expected, "every device of the lab idle")
    assert all(d["online"] and not d["busy"] for d in manager.devices())

    # a researcher's scan waits for approval: it appears in the queue, with its submitter
    scan = alice.submit("scan", SCAN)
    assert scan.state == ExperimentState.waiting_for_approval
    text, actions = row(driver, "queue", scan.id, "waiting_for_approval")
    assert "scan" in text and "alice" in text and scan.id[:8] in text
    assert set(scan.devices) == {"thermometer", "stirrer"}
    assert all(device in text for device in scan.devices)  # what it will drive is shown
    assert actions == ["approve", "reject", "cancel"]

    # hold the lab with the button: the gateway says it is held
    control(driver, "hold")
    until(driver, lambda _: manager.lab()["held"], "the lab held")
    until(driver, EC.text_to_be_present_in_element((By.ID, "lab-held"), "held"), "held shown")

    # while it is held, a measurement waits in the queue; cancel it with its button
    measure = alice.submit("measure", MEASURE)
    assert row(driver, "queue", measure.id, "queued")[1] == ["front", "back", "cancel"]
    click_row_action(driver, measure.id, "cancel")
    until(driver, EC.alert_is_present(), "the confirmation").accept()
    until(
        driver,
        lambda _: state_of(manager, measure.id) == ExperimentState.cancelled,
        "the measurement cancelled",
    )
    row(driver, "finished", measure.id, "cancelled")

    # approve the scan: it queues (the lab is held, so it waits)
    click_row_action(driver, scan.id, "approve")
    until(driver, lambda _: state_of(manager, scan.id) == ExperimentState.queued, "approved")
    row(driver, "queue", scan.id, "queued")

    # a control that does not apply is disabled: nothing runs, so no Resume, Pause or Stop
    for action in ("pause", "resume", "stop", "abort"):
        button = driver.find_element(By.CSS_SELECTOR, f'#lab-controls [data-control="{action}"]')
        assert not button.is_enabled(), action
    refused = httpx.post(
        f"{site.url}/api/v1/labs/{site.lab.name}/resume",
        headers={"Authorization": f"Bearer {site.tokens['demo-manager']}"},
    )
    assert refused.status_code == 409  # and the gateway would refuse it anyway

    # release the lab: the scan runs to its end, and the page and its live feed show it
    control(driver, "release")
    until(driver, lambda _: not manager.lab()["held"], "the lab released")
    assert scan.wait(timeout=TIMEOUT).state == ExperimentState.completed
    row(driver, "finished", scan.id, "completed")
    until(
        driver,
        lambda d: any(
            scan.id[:8] in li.text for li in d.find_elements(By.CSS_SELECTOR, "#live li.start")
        ),
        "the scan's run start in the live feed",
    )
    assert driver.find_elements(By.CSS_SELECTOR, "#live li.stop")


def test_buttons_follow_the_role_and_the_gateway_enforces_it(driver, site, manager, alice):
    scan = alice.submit("scan", SCAN)  # waits for approval
    # an observer sees the queue but no button at all
    sign_in(driver, site.url, site.tokens["olga"])
    signed_in_as(driver, "olga · observer")
    assert row(driver, "queue", scan.id, "waiting_for_approval")[1] == []
    assert not driver.find_element(By.ID, "lab-controls").is_displayed()
    for page in ("submit", "audit"):  # no form, no audit log
        assert not driver.find_element(By.CSS_SELECTOR, f'#nav a[data-nav="{page}"]').is_displayed()

    # the researcher who submitted it may cancel it, not approve it, nor control the lab
    sign_in(driver, site.url, site.tokens["alice"])
    signed_in_as(driver, "alice · researcher")
    assert row(driver, "queue", scan.id, "waiting_for_approval")[1] == ["cancel"]
    assert not driver.find_element(By.ID, "lab-controls").is_displayed()
    hold = httpx.post(
        f"{site.url}/api/v1/labs/{site.lab.name}/hold",
        headers={"Authorization": f"Bearer {site.tokens['alice']}"},
    )
    assert hold.status_code == 403 and not manager.lab()["held"]
    click_row_action(driver, scan.id, "cancel")
    until(driver, EC.alert_is_present(), "the confirmation").accept()
    until(
        driver,
        lambda _: state_of(manager, scan.id) == ExperimentState.cancelled,
        "the scan cancelled by its submitter",
    )
    row(driver, "finished", scan.id, "cancelled")


#: long enough to pause while it runs (it is aborted once seen)
LONG = {"detectors": ["thermometer"], "num": 10_000}


def run_card(
    driver: WebDriver, experiment_id: str, state: str, what: str, text: str = ""
) -> dict[str, Any]:
    """The card of a running experiment once it shows ``state``, ``text`` and some progress:
    its text, and which of its controls are enabled."""
    selector = f'#running .run-card[data-id="{experiment_id}"][data-state="{state}"]'

    def shown(d: WebDriver) -> dict[str, Any] | None:
        found = d.find_elements(By.CSS_SELECTOR, selector)
        if not found or not found[0].is_displayed() or text not in found[0].text:
            return None
        count = found[0].find_element(By.CLASS_NAME, "run-count").text
        if not count or count.startswith("0/"):
            return None
        buttons = found[0].find_elements(By.CSS_SELECTOR, "button[data-run-control]")
        return {
            "text": found[0].text,
            "count": count,
            "enabled": {b.get_attribute("data-run-control"): b.is_enabled() for b in buttons},
            "shown": all(b.is_displayed() for b in buttons),
        }

    return until(driver, shown, what)


def test_a_running_experiment_has_its_card(driver, site, manager):
    sign_in(driver, site.url, site.tokens["demo-manager"])
    signed_in_as(driver, "demo-manager · manager")
    exp = manager.submit("measure", LONG)
    card = run_card(driver, exp.id, "running", "the measurement's card", text="by demo-manager")
    assert "measure" in card["text"] and "by demo-manager" in card["text"]
    assert card["count"].endswith("/10000 points")
    assert card["shown"]
    assert card["enabled"] == {"pause": True, "resume": False, "stop": True, "abort": True}
    # the device it drives shows its holder
    holder = f'#devices tr[data-device="thermometer"] td.holder code[title="{exp.id}"]'
    until(driver, EC.visibility_of_element_located((By.CSS_SELECTOR, holder)), "its holder")

    # paused (the lab's one running experiment): the card says so, only resume applies
    control(driver, "pause")
    card = run_card(driver, exp.id, "paused", "the card paused")
    assert card["enabled"] == {"pause": False, "resume": True, "stop": True, "abort": True}
    control(driver, "resume")
    run_card(driver, exp.id, "running", "the card running again")

    control(driver, "abort")
    until(driver, EC.alert_is_present(), "the confirmation").accept()
    assert exp.wait(timeout=TIMEOUT).state == ExperimentState.cancelled
    gone = f'#running .run-card[data-id="{exp.id}"]'
    until(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, gone), "its card gone")


def test_an_observer_sees_the_card_without_controls(driver, site, manager):
    exp = manager.submit("measure", LONG)
    try:
        sign_in(driver, site.url, site.tokens["olga"])
        signed_in_as(driver, "olga · observer")
        card = run_card(driver, exp.id, "running", "the card, for an observer")
        assert "measure" in card["text"] and not card["shown"]
    finally:
        manager.cancel(exp.id)
    assert exp.wait(timeout=TIMEOUT).state == ExperimentState.cancelled


def test_two_experiments_on_disjoint_devices_each_have_a_card(driver, site, manager):
    assert site.lab.concurrency >= 2  # the shipped lab runs several at once
    sign_in(driver, site.url, site.tokens["demo-manager"])
    signed_in_as(driver, "demo-manager · manager")
    one = manager.submit("measure", LONG)
    two = manager.submit("measure", {"detectors": ["balance"], "num": 10_000})
    try:
        run_card(driver, one.id, "running", "the first card")
        run_card(driver, two.id, "running", "the second card")
        # the lab-wide Pause cannot tell which: the gateway's refusal shows in the banner
        control(driver, "pause")
        error = until(driver, EC.visibility_of_element_located((By.ID, "error-text")), "error")
        refused = httpx.post(
            f"{site.url}/api/v1/labs/{site.lab.name}/pause",
            headers={"Authorization": f"Bearer {site.tokens['demo-manager']}"},
        )
        assert refused.status_code == 409
        until(driver, lambda _: error.text == refused.json()["detail"], "the refusal shown")
        # pause one with its own button: the other runs on
        click(driver, f'.run-card[data-id="{one.id}"] button[data-run-control="pause"]', "pause")
        run_card(driver, one.id, "paused", "the first card paused")
        assert run_card(driver, two.id, "running", "the second still running")["enabled"]["pause"]
        click(driver, f'.run-card[data-id="{one.id}"] button[data-run-control="resume"]', "resume")
        run_card(driver, one.id, "running", "the first card running again")
    finally:
        for exp in (one, two):
            manager.cancel(exp.id)
    for exp in (one, two):
        assert exp.wait(timeout=TIMEOUT).state == ExperimentState.cancelled
