"""Helpers of the dashboard's browser tests: Debian's Chromium and chromedriver (never a
browser download), and waiting on the page's conditions (never on time)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    ElementNotInteractableException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

CHROME_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
]
#: every request off this machine fails: no name resolves but loopback's, and anything that
#: is not loopback goes to a proxy that is not there ("the network unplugged")
OFFLINE_FLAGS = [
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--proxy-server=http://127.0.0.1:9",
]
#: seconds any one condition may take (a generous bound, never a measurement)
TIMEOUT = 60
#: what a click or keystroke may meet while the page re-renders or shows and hides a view:
#: none of them did anything, so the action is tried again
INTERACTION_ERRORS = (
    StaleElementReferenceException,
    ElementNotInteractableException,
    ElementClickInterceptedException,
)
Locator = tuple[str, str]


@contextmanager
def chromium(
    profile: Path, *, offline: bool = False, downloads: Path | None = None
) -> Iterator[WebDriver]:
    """A headless Debian Chromium (skipped without one, failed in CI); ``offline``: no
    request leaves the machine; ``downloads``: where downloads are saved. Its requests are
    logged (``requested_urls``)."""
    chromium_bin, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium_bin and chromedriver):
        message = (
            "the dashboard's browser test needs chromium and chromedriver on PATH "
            "(Debian: apt-get install chromium chromium-driver)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = Options()
    options.binary_location = chromium_bin
    for flag in CHROME_FLAGS + (OFFLINE_FLAGS if offline else []):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    if downloads is not None:
        options.add_experimental_option(
            "prefs",
            {"download.default_directory": str(downloads), "download.prompt_for_download": False},
        )
    # an explicit driver: selenium-manager never looks for (or downloads) one
    browser = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        if downloads is not None:
            browser.execute_cdp_cmd(
                "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
            )
        yield browser
    finally:
        browser.quit()


def requested_urls(driver: WebDriver) -> list[str]:
    """Every URL the browser asked for since the last call (its performance log)."""
    import json

    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def until(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    """Wait for ``condition`` (a table the page rebuilds may go stale under it: look again)."""
    wait = WebDriverWait(driver, TIMEOUT, poll_frequency=0.1, ignored_exceptions=INTERACTION_ERRORS)
    return wait.until(condition, what)


def click(driver: WebDriver, selector: str, what: str) -> None:
    """Click the element at ``selector`` once it is shown and enabled; tried again if the page
    replaces, hides or covers it meanwhile."""

    def clicked(d: WebDriver) -> bool:
        button = EC.element_to_be_clickable((By.CSS_SELECTOR, selector))(d)
        if not button:
            return False
        button.click()
        return True

    until(driver, clicked, f"{what} (clicked)")


def type_into(driver: WebDriver, locator: Locator, text: str, what: str) -> None:
    """Type ``text`` into the field at ``locator`` once it takes input, until it holds it."""

    def typed(d: WebDriver) -> bool:
        field = EC.element_to_be_clickable(locator)(d)
        if not field:
            return False
        field.clear()
        field.send_keys(text)
        return field.get_attribute("value") == text

    until(driver, typed, f"{what} (typed into)")


def signed_out(driver: WebDriver) -> bool:
    """The page shows its sign-in form, and only that."""
    return (
        driver.find_element(By.ID, "login-view").is_displayed()
        and not driver.find_element(By.ID, "lab-view").is_displayed()
    )


def sign_in(driver: WebDriver, base_url: str, token: str) -> None:
    """Open the dashboard signed out and sign in with ``token``.

    The tab's stored token is cleared on a page of the gateway that runs no script: on the
    dashboard itself, a sign-in still under way with the stored token would store it again
    and sign the reloaded page back in, hiding the form while the test types into it."""
    driver.get(f"{base_url}/dashboard/static/dashboard.css")
    driver.execute_script("sessionStorage.clear()")
    driver.get(f"{base_url}/dashboard")
    until(driver, signed_out, "the sign-in form")
    type_into(driver, (By.ID, "token"), token, "the token field")
    click(driver, "#login-button", "the sign-in button")


def signed_in_as(driver: WebDriver, text: str) -> None:
    until(driver, EC.text_to_be_present_in_element((By.ID, "who"), text), f"signed in as {text}")


def visible(driver: WebDriver, selector: str, what: str) -> Any:
    """The element at ``selector`` once it is shown."""
    return until(driver, EC.visibility_of_element_located((By.CSS_SELECTOR, selector)), what)
