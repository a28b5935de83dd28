"""The gateway and its queue share one plan registry per lab: what the gateway lists is what
the queue accepts."""

from __future__ import annotations

import bluesky.plan_stubs as bps

from remotelab.api import API_PREFIX
from remotelab.plans import Param, PlanParams, plan


class WaitParams(PlanParams):
    seconds: float = Param(0.1, ge=0, le=10, description="how long to wait")


@plan(params=WaitParams, example={"seconds": 0.1})
def settle(seconds: float = 0.1, *, md: dict | None = None):
    """Wait for the lab to settle."""
    yield from bps.sleep(seconds)


def test_the_gateway_uses_its_queues_registry(site):
    service = site.app.state.gateway.lab(site.name)
    assert service.registry is site.queue.registry
    assert service.queue is site.queue


def test_a_plan_registered_on_the_queue_is_listed_and_accepted_by_the_gateway(site):
    base = f"{API_PREFIX}/labs/{site.name}"
    manager = site.headers("manager")
    assert site.client.get(f"{base}/plans/settle", headers=manager).status_code == 404

    site.queue.registry.register(settle)

    listed = site.client.get(f"{base}/plans", headers=manager)
    assert listed.status_code == 200
    info = next(p for p in listed.json() if p["name"] == "settle")
    assert info["allowed"] and info["schema"]["properties"]["seconds"]["maximum"] == 10
    shown = site.client.get(f"{base}/plans/settle", headers=manager)
    assert shown.status_code == 200 and shown.json()["example"] == {"seconds": 0.1}

    bad = site.client.post(
        f"{base}/experiments", json={"plan": "settle", "params": {"seconds": 99}}, headers=manager
    )
    assert bad.status_code == 422 and "seconds" in str(bad.json()["errors"])
    good = site.client.post(
        f"{base}/experiments", json={"plan": "settle", "params": {"seconds": 0.5}}, headers=manager
    )
    assert good.status_code == 201, good.text
    exp = good.json()
    assert exp["plan"] == "settle" and exp["params"]["seconds"] == 0.5
    assert site.queue.get(exp["id"]).plan == "settle"
    site.client.post(f"{base}/experiments/{exp['id']}/cancel", json={}, headers=manager)
