"""Prefect's API is closed around the gateway: without its auth string nothing is read,
created or changed there (the side door that let a local process order an experiment as a
manager, or cancel another's); browsers of other origins are refused; CSRF protection is on."""

from __future__ import annotations

import os
import stat

import httpx
import pytest

from remotelab.queue import ExperimentQueue, ExperimentState
from remotelab.queue.server import AUTH_FILE


@pytest.fixture
def exp(lab, prefect_api):
    queue = ExperimentQueue(lab, api_url=prefect_api)
    queue.ensure()
    queue.hold()  # nothing starts: the experiment stays queued
    try:
        yield queue, queue.submit("measure", {"detectors": ["thermometer"], "num": 1},
                                  submitter="alice", role="researcher")  # fmt: skip
    finally:
        queue.release()
        queue.close()


def test_without_the_auth_string_prefect_answers_401_to_everything(remotelab_prefect, exp):
    queue, submitted = exp
    api = remotelab_prefect.api_url
    with httpx.Client(base_url=api, timeout=10) as anyone:
        assert anyone.get("/health").status_code == 200  # probes stay open
        assert anyone.get(f"/flow_runs/{submitted.id}").status_code == 401
        assert anyone.get("/variables/").status_code == 401  # where worker addresses live
        token = anyone.get("/csrf-token", params={"client": "intruder"})
        assert token.status_code == 401
        headers = {"Prefect-Csrf-Token": "x", "Prefect-Csrf-Client": "intruder"}
        deployments = anyone.post("/deployments/filter", json={}, headers=headers)
        assert deployments.status_code in (401, 403)
        forged = anyone.post(
            f"/flow_runs/{submitted.id}/set_state",
            json={"state": {"type": "CANCELLED", "name": "Cancelled"}, "force": True},
            headers=headers,
        )
        assert forged.status_code in (401, 403)
    assert queue.get(submitted.id).state == ExperimentState.queued  # untouched


def test_with_a_wrong_auth_string_it_is_401(remotelab_prefect):
    with httpx.Client(base_url=remotelab_prefect.api_url, timeout=10) as guess:
        answer = guess.get("/csrf-token", params={"client": "c"}, auth=("remotelab", "guess"))
        assert answer.status_code == 401


def test_other_web_origins_are_refused_and_csrf_is_required(remotelab_prefect):
    api = remotelab_prefect.api_url
    user, password = remotelab_prefect.auth_string.split(":", 1)
    with httpx.Client(base_url=api, timeout=10, auth=(user, password)) as insider:
        preflight = {"Access-Control-Request-Method": "POST"}
        evil = insider.options(
            "/flow_runs/filter", headers={"Origin": "http://evil.example", **preflight}
        )
        assert evil.headers.get("access-control-allow-origin") is None
        own = insider.options(
            "/flow_runs/filter", headers={"Origin": remotelab_prefect.ui_url, **preflight}
        )
        assert own.headers.get("access-control-allow-origin") == remotelab_prefect.ui_url
        # the auth string alone does not make a state-changing request: a CSRF token is needed
        answer = insider.post("/flow_runs/filter", json={})
        assert answer.status_code == 403 and "CSRF" in answer.text


def test_the_auth_string_is_kept_readable_by_its_user_only(remotelab_prefect):
    path = remotelab_prefect.home / AUTH_FILE
    if os.environ.get("PREFECT_API_AUTH_STRING") and not path.exists():
        pytest.skip("this session's server took its auth string from the environment")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == remotelab_prefect.auth_string
