"""The dashboard as the lab's front desk, in a real headless Chromium with every request off
this machine blocked, against a real gateway, Prefect server and worker on the simulated lab:
a researcher submits from the form (first with a value out of its limits, the gateway's
message beside the field), watches the progress bar and the live plot, opens the run page and
downloads the CSV; a manager approves seeing the parameters, answers the plan's question from
the experiment page, changes a priority, rejects with a reason and reads the audit log; a
researcher sees no manager control; ``/docs`` renders with the network unplugged.

What the page did is checked in the real queue and run store through the Python client. The
test saves screenshots to ``$REMOTELAB_SCREENSHOTS`` (default: a temporary folder); the docs'
are made with ``REMOTELAB_SCREENSHOTS=docs/img pytest tests/api/test_dashboard_desk.py``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from api_helpers import free_port, write_lab
from browser_helpers import (
    TIMEOUT,
    chromium,
    click,
    requested_urls,
    sign_in,
    signed_in_as,
    type_into,
    until,
    visible,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select

from remotelab import Client
from remotelab.embedded import Embedded
from remotelab.queue import ExperimentState

SCAN = {"detectors": ["thermometer"], "motor": "stirrer", "start": 0, "stop": 100, "num": 3}
#: long enough at the fast clock to watch its progress (a few seconds), short enough to end
POINTS = 3000


@pytest.fixture(scope="session")
def prefect_api(remotelab_prefect) -> str:
    """The dashboard on SQLite only: what it shows does not depend on Prefect's database."""
    return remotelab_prefect.api_url


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def driver(tmp_path_factory, downloads) -> Iterator[WebDriver]:
    with chromium(tmp_path_factory.mktemp("chromium"), offline=True, downloads=downloads) as b:
        yield b


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where the screenshots go: ``$REMOTELAB_SCREENSHOTS``, else a temporary folder."""
    given = os.environ.get("REMOTELAB_SCREENSHOTS")
    path = Path(given) if given else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory, prefect_api) -> Iterator[Embedded]:
    """The simulated lab (researchers' scans wait for approval) with a plan that asks the
    operator (``desk_plans.ask``); users alice (researcher) and olga (observer)."""
    tmp = tmp_path_factory.mktemp("desk")
    lab_file = write_lab(tmp)
    data = yaml.safe_load(lab_file.read_text())
    data["plans"]["modules"] = ["desk_plans"]
    data["plans"]["roles"]["researcher"].append("ask")
    lab_file.write_text(yaml.safe_dump(data))
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
            c.release()


@pytest.fixture
def alice(site) -> Iterator[Client]:
    with Client(site.url, site.tokens["alice"]) as c:
        yield c


def go(driver: WebDriver, where: str) -> None:
    """Follow the page's own link to ``where`` (``#/…``)."""
    driver.execute_script("location.hash = arguments[0]", where)


def field(param: str, inner: str = "input") -> str:
    return f'#form-fields .field[data-param="{param}"] {inner}'


def attribute(driver: WebDriver, selector: str, name: str) -> str | None:
    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return found[0].get_attribute(name) if found else None


def number(driver: WebDriver, selector: str, name: str) -> float:
    value = attribute(driver, selector, name)
    return float(value) if value not in (None, "") else 0.0


def off_gateway(urls: list[str], base: str) -> list[str]:
    """The requests over the network that did not go to the gateway (the browser's own
    ``chrome:`` pages and the page's ``data:`` and ``blob:`` URLs stay in the browser)."""
    return [u for u in urls if u.startswith(("http:", "https:", "ws")) and not u.startswith(base)]


def text_once(driver: WebDriver, selector: str, what: str, wanted: str) -> str:
    """The text of the element at ``selector`` once it holds ``wanted`` (the page may rebuild
    the element meanwhile: looked up again each time)."""

    def found(d: WebDriver) -> str | None:
        nodes = d.find_elements(By.CSS_SELECTOR, selector)
        text = nodes[0].text if nodes else ""
        return text if wanted in text else None

    return until(driver, found, what)


def experiment_page(driver: WebDriver, exp_id: str) -> None:
    go(driver, f"#/experiments/{exp_id}")
    until(driver, EC.text_to_be_present_in_element((By.ID, "exp-id"), exp_id), "its page")


# -- /docs, offline ------------------------------------------------------------------------------
def test_docs_render_with_the_network_unplugged(driver, site):
    html = httpx.get(f"{site.url}/docs").text
    assert "cdn" not in html.lower() and "https://" not in html and "http://" not in html
    assert httpx.get(f"{site.url}/redoc").status_code == 404  # ReDoc would need a CDN
    requested_urls(driver)
    driver.get(f"{site.url}/docs")
    title = visible(driver, ".swagger-ui .info .title", "Swagger UI's title")
    assert "remotelab gateway" in title.text
    until(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) > 30, "the routes")
    assert driver.find_elements(By.CSS_SELECTOR, '.opblock[id*="experiment_history"]')
    assert off_gateway(requested_urls(driver), site.url) == []


# -- a researcher -------------------------------------------------------------------------------
def test_researcher_submits_watches_and_downloads(driver, site, alice, shots, downloads):
    sign_in(driver, site.url, site.tokens["alice"])
    signed_in_as(driver, "alice · researcher")
    click(driver, '#nav a[data-nav="submit"]', "the Submit link")
    visible(driver, '#form-plan option[value="measure"]', "the plan picker")
    Select(driver.find_element(By.ID, "form-plan")).select_by_value("measure")
    # the fields come from the plan's schema: its detectors are the lab's, its limits shown
    boxes = until(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, field("detectors", "input[type=checkbox]")),
        "the detector choices",
    )
    plan = next(p for p in alice.plans() if p["name"] == "measure")
    assert [b.get_attribute("value") for b in boxes] == plan["choices"]["detectors"]
    assert "1 – 10000" in driver.find_element(By.CSS_SELECTOR, field("num", ".limits")).text
    assert driver.find_element(By.CSS_SELECTOR, field("num")).get_attribute("value") == "3"
    click(driver, field("detectors", 'input[value="thermometer"]'), "thermometer")

    # out of its limits: the gateway's message beside the field it names
    type_into(driver, (By.CSS_SELECTOR, field("num")), "20000", "num")
    click(driver, "#form-submit", "Submit")
    error = visible(driver, field("num", ".field-error"), "the message beside num")
    refused = httpx.post(
        f"{site.url}/api/v1/labs/{site.lab.name}/experiments",
        headers={"Authorization": f"Bearer {site.tokens['alice']}"},
        json={"plan": "measure", "params": {"detectors": ["thermometer"], "num": 20000}},
    )
    assert refused.status_code == 422
    (message,) = [e["message"] for e in refused.json()["errors"] if e["param"] == "num"]
    assert error.text == message
    driver.save_screenshot(str(shots / "submit-form-error.png"))
    assert alice.experiments()[1] == 0  # nothing was queued

    # within its limits: queued, and the page goes to the experiment
    type_into(driver, (By.CSS_SELECTOR, field("num")), str(POINTS), "num")
    click(driver, "#form-submit", "Submit")
    until(driver, lambda d: "#/experiments/" in d.current_url, "the experiment's page")
    exp_id = driver.current_url.rsplit("/", 1)[-1]
    assert alice.experiment(exp_id).params == {"detectors": ["thermometer"], "num": POINTS}

    # the lab view: its card with a progress bar that advances and a plot that gains points
    click(driver, '#nav a[data-nav="lab"]', "the Lab link")
    card = f'#running .run-card[data-id="{exp_id}"]'
    until(driver, lambda d: number(d, f"{card} progress", "value") > 0, "some progress")
    until(driver, lambda d: number(d, f"{card} .run-plot", "data-points") > 0, "plotted points")
    progress = number(driver, f"{card} progress", "value")
    points = number(driver, f"{card} .run-plot", "data-points")
    assert attribute(driver, f"{card} progress", "max") == str(POINTS)
    until(driver, lambda d: number(d, f"{card} progress", "value") > progress, "progress")
    until(driver, lambda d: number(d, f"{card} .run-plot", "data-points") > points, "more points")
    until(
        driver,
        lambda d: "left" in d.find_element(By.CSS_SELECTOR, f"{card} .run-eta").text,
        "the time left",
    )
    visible(driver, f"{card} .run-plot canvas", "the plot drawn")
    # the device it reads is busy with it and shows its reading
    thermometer = '#devices tr[data-device="thermometer"]'
    until(driver, lambda d: attribute(d, thermometer, "data-state") == "busy", "busy")
    until(
        driver,
        lambda d: d.find_element(By.CSS_SELECTOR, f"{thermometer} td.reading").text,
        "its reading",
    )
    # the sample tracker: where each sample is, as the gateway says
    samples = {s["id"]: s for s in alice.samples()}
    s001 = text_once(driver, '#samples tr[data-sample="S001"]', "the samples", "available")
    assert samples["S001"]["location"] in s001
    driver.save_screenshot(str(shots / "queue-running-live-plot.png"))
    # a researcher sees no manager control
    assert not driver.find_element(By.ID, "lab-controls").is_displayed()
    assert not driver.find_element(By.CSS_SELECTOR, '#nav a[data-nav="audit"]').is_displayed()
    assert not any(
        b.is_displayed() for b in driver.find_elements(By.CSS_SELECTOR, f"{card} button")
    )

    # it ends; from its page to its run's page: metadata, the plot, the downloads
    assert alice.experiment(exp_id).wait(timeout=TIMEOUT).state == ExperimentState.completed
    experiment_page(driver, exp_id)
    click(driver, "#exp-runs a.run-link", "the run")
    (uid,) = alice.experiment(exp_id).run_uids
    until(driver, EC.text_to_be_present_in_element((By.ID, "run-uid"), uid), "the run page")
    until(driver, lambda d: number(d, "#run-plot", "data-points") == POINTS, "the whole plot")
    assert str(POINTS) in driver.find_element(By.ID, "run-facts").text
    links = {
        (a.find_element(By.XPATH, "..").get_attribute("data-stream"), a.text)
        for a in driver.find_elements(By.CSS_SELECTOR, "#run-downloads a.download")
    }
    assert links == {("*", "HDF5"), ("primary", "CSV"), ("primary", "JSON")}
    driver.save_screenshot(str(shots / "run-page.png"))
    click(driver, '#run-downloads li[data-stream="primary"] a.download', "the CSV link")
    saved = downloads / f"run-{uid[:8]}.primary.csv"  # the gateway's name for it
    until(driver, lambda _: saved.exists() and saved.stat().st_size > 0, "the CSV downloaded")
    expected = alice.run_data(uid, "csv").encode()
    got = saved.read_bytes()  # as downloaded (the CSV's own line ends), compared by digest:
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(expected).hexdigest(), (
        f"the downloaded CSV ({len(got)} bytes) is not the gateway's ({len(expected)} bytes)"
    )
    assert off_gateway(requested_urls(driver), site.url) == []


def test_a_spectrum_is_plotted_as_its_latest_array(driver, site, alice):
    sign_in(driver, site.url, site.tokens["alice"])
    signed_in_as(driver, "alice · researcher")
    exp = alice.submit("measure", {"detectors": ["spectrometer"], "num": 5000})  # cancelled
    box = f'#running .run-card[data-id="{exp.id}"] .run-plot'
    until(driver, lambda d: number(d, box, "data-spectra") > 0, "a spectrum")
    visible(driver, f"{box} .plot-spectrum canvas", "the spectrum drawn")
    visible(driver, f"{box} .plot-lines canvas", "its scalar readings drawn as lines")
    seq = number(driver, f"{box} .plot-spectrum", "data-seq")
    until(driver, lambda d: number(d, f"{box} .plot-spectrum", "data-seq") > seq, "a later one")
    assert "spectrometer_absorbance" in attribute(driver, box, "data-keys")
    alice.cancel(exp.id)
    (uid,) = exp.wait(timeout=TIMEOUT).run_uids
    go(driver, f"#/runs/{uid}")
    key = visible(
        driver,
        '#run-downloads li[data-stream="primary"] a[data-url*="key=spectrometer_absorbance"]',
        "the array key's own CSV",
    )
    assert key.text == "spectrometer_absorbance CSV"
    assert "format=csv" in key.get_attribute("data-url")


def test_a_researcher_edits_a_waiting_experiment_and_may_not_approve(driver, site, alice):
    scan = alice.submit("scan", SCAN)  # waits for approval
    try:
        sign_in(driver, site.url, site.tokens["alice"])
        signed_in_as(driver, "alice · researcher")
        experiment_page(driver, scan.id)
        buttons = until(
            driver,
            lambda d: d.find_elements(By.CSS_SELECTOR, "#exp-actions [data-exp-action]"),
            "its buttons",
        )
        assert [b.get_attribute("data-exp-action") for b in buttons] == ["edit", "cancel"]
        approve = httpx.post(
            f"{site.url}/api/v1/labs/{site.lab.name}/experiments/{scan.id}/approve",
            headers={"Authorization": f"Bearer {site.tokens['alice']}"},
        )
        assert approve.status_code == 403  # the gateway refuses what the page does not offer

        # the same form edits it, filled with its parameters
        click(driver, '#exp-actions [data-exp-action="edit"]', "Edit")
        until(driver, lambda d: attribute(d, field("stop"), "value") == "100", "its stop")
        motor = Select(driver.find_element(By.CSS_SELECTOR, field("motor", "select")))
        assert motor.first_selected_option.text == "stirrer"
        assert (
            "limits of stirrer: setpoint 0 – 1200"
            in driver.find_element(By.CSS_SELECTOR, field("motor", ".hint")).text
        )
        type_into(driver, (By.CSS_SELECTOR, field("stop")), "5000", "stop")  # past the limit
        click(driver, "#form-submit", "Save")
        error = visible(driver, field("stop", ".field-error"), "the message beside stop")
        assert error.text == "5000 is outside stirrer's setpoint limits [0, 1200]"
        assert alice.experiment(scan.id).params["stop"] == 100
        type_into(driver, (By.CSS_SELECTOR, field("stop")), "200", "stop")
        click(driver, "#form-submit", "Save")
        until(driver, lambda _: alice.experiment(scan.id).params["stop"] == 200, "edited")
        until(driver, lambda d: "#/experiments/" in d.current_url, "back on its page")
        until(
            driver,
            lambda d: any(
                "alice" in li.text and "stop=100" in li.text
                for li in d.find_elements(By.CSS_SELECTOR, "#exp-edits li")
            ),
            "the edit listed, with what it was before",
        )
    finally:
        alice.cancel(scan.id)


# -- a manager ----------------------------------------------------------------------------------
def test_manager_approves_answers_prioritises_and_reads_the_audit(
    driver, site, manager, alice, shots
):
    manager.hold()  # what is approved or queued waits, so the page can act on it
    scan = alice.submit("scan", SCAN)
    rejected = alice.submit("scan", {**SCAN, "stop": 50})
    measure = alice.submit("measure", {"detectors": ["thermometer"], "num": 2})
    sign_in(driver, site.url, site.tokens["demo-manager"])
    signed_in_as(driver, "demo-manager · manager")
    # the feed starts with the lab's recent history (the runs of the tests before)
    visible(driver, "#live li.replay", "the feed's history")

    # approving, the parameters are in plain sight: in the queue and on its page
    row = f'#queue tr[data-id="{scan.id}"] .note.params'
    params = text_once(driver, row, "the scan's parameters in the queue", "stop=")
    assert all(f"{k}=" in params for k in SCAN) and "stop=100" in params
    experiment_page(driver, scan.id)
    until(
        driver,
        lambda d: (
            d.find_element(By.CSS_SELECTOR, '#exp-params tr[data-key="stop"] td').text == "100"
        ),
        "its parameters",
    )
    click(driver, '#exp-actions [data-exp-action="approve"]', "Approve")
    until(driver, lambda _: manager.experiment(scan.id).state == ExperimentState.queued, "approved")
    until(
        driver,
        lambda d: any(
            "approve" in r.text and "demo-manager" in r.text
            for r in d.find_elements(By.CSS_SELECTOR, "#exp-requests tbody tr")
        ),
        "the approval among its requests",
    )

    # rejected with a reason: the reason is shown with it
    experiment_page(driver, rejected.id)
    type_into(driver, (By.ID, "exp-reason"), "stirrer booked for cleaning", "the reason")
    click(driver, '#exp-actions [data-exp-action="reject"]', "Reject")
    until(driver, EC.alert_is_present(), "the confirmation").accept()
    until(
        driver,
        lambda _: manager.experiment(rejected.id).state == ExperimentState.cancelled,
        "rejected",
    )
    until(
        driver,
        EC.text_to_be_present_in_element(
            (By.ID, "exp-facts"), "rejected by demo-manager: stirrer booked for cleaning"
        ),
        "the reason shown",
    )

    # a priority changed from the experiment's page
    experiment_page(driver, measure.id)
    until(driver, EC.element_to_be_clickable((By.ID, "exp-priority")), "the priority picker")
    Select(driver.find_element(By.ID, "exp-priority")).select_by_value("urgent")
    click(driver, '#exp-actions [data-exp-action="priority"]', "Set priority")
    until(driver, lambda _: manager.experiment(measure.id).priority == "urgent", "prioritised")

    # the plan asks the operator: answered from its page
    manager.release()
    ask = alice.submit("ask", {"prompt": "is the vial capped?"})
    experiment_page(driver, ask.id)
    text_once(driver, "#exp-question .prompt", "the question", "is the vial capped?")
    driver.save_screenshot(str(shots / "experiment-page.png"))
    click(driver, '#exp-question button[data-answer="true"]', "Yes")
    assert manager.experiment(ask.id).wait(timeout=TIMEOUT).state == ExperimentState.completed
    history = manager.experiment_history(ask.id)
    assert [a["action"] for a in history["actions"]] == ["experiment.submit", "experiment.answer"]
    assert any(s["name"] == "AwaitingOperator" for s in history["states"])
    until(
        driver,
        lambda d: any(
            r.get_attribute("data-action") == "experiment.answer" and "demo-manager" in r.text
            for r in d.find_elements(By.CSS_SELECTOR, "#exp-requests tbody tr")
        ),
        "the answer among its requests",
    )

    # the audit log, filtered by action
    click(driver, '#nav a[data-nav="audit"]', "the audit log")
    type_into(driver, (By.ID, "audit-action"), "experiment.prioritise", "the action filter")
    click(driver, "#audit-apply", "Filter")

    def filtered(d: WebDriver) -> list[Any] | None:
        rows = d.find_elements(By.CSS_SELECTOR, "#audit tbody tr")
        actions = {r.get_attribute("data-action") for r in rows}
        return rows if rows and actions == {"experiment.prioritise"} else None

    rows = until(driver, filtered, "the filtered audit log")
    assert any(measure.id[:8] in r.text and "priority=urgent" in r.text for r in rows)
    assert len(rows) == len(manager.audit(action="experiment.prioritise", lab=site.lab.name))
    for exp in (scan, measure):
        exp.wait(timeout=TIMEOUT)
