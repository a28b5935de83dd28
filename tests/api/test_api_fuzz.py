"""Fuzz the whole gateway from its own OpenAPI document (schemathesis): no answer is a 5xx,
every answer has a documented status and content type, and fits its documented schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from api_helpers import Site, make_site
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from remotelab.api import API_PREFIX
from remotelab.api.routes import router

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
OPERATIONS = sorted(
    (method, API_PREFIX + route.path)
    for route in router.routes
    if isinstance(route, APIRoute)
    for method in route.methods
)


@pytest.fixture(scope="module")
def fuzz_site(tmp_path_factory, prefect_api) -> Iterator[Site]:
    yield from make_site(tmp_path_factory.mktemp("fuzz"), prefect_api)


@pytest.fixture(scope="module")
def api_schema(fuzz_site):
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_site.app)


@pytest.mark.parametrize("method, path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzz(api_schema, fuzz_site, method, path):
    operation = api_schema[path][method]
    headers = fuzz_site.headers("admin")

    @given(case=operation.as_strategy())
    @settings(
        max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def check(case):
        # reach past "no such lab" half of the time: the lab's real name, or a random one
        params = case.path_parameters or {}
        if "lab" in params and hash(repr(case.query) + repr(case.body)) % 2 == 0:
            params["lab"] = fuzz_site.name
        if path.endswith("/events"):
            case.query = {**(case.query or {}), "timeout": 0.2}
        case.call_and_validate(headers=headers, checks=CHECKS)

    check()


BODY_OPERATIONS = [(m, p) for m, p in OPERATIONS if m in ("POST", "PATCH", "PUT")]
HOSTILE_BODIES = {
    "oversized": b'{"reason": "' + b"y" * (2 << 20) + b'"}',
    "deep": b'{"params": ' + b'{"x": ' * 900 + b"1" + b"}" * 901,
    "non-finite": b'{"params": {"num": NaN}, "reason": Infinity, "value": -Infinity}',
    "bidi": '{"reason": "ok\u202e", "name": "a\\u0000b"}'.encode(),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_BODIES))
def test_hostile_bodies_get_4xx_everywhere_and_the_audit_log_still_reads(fuzz_site, kind):
    """Every operation that takes a body answers an oversized, deeply nested, non-finite or
    bidi-laden one with 4xx (413/422), never 5xx; the audit log stays readable after."""
    headers = {**fuzz_site.headers("admin"), "content-type": "application/json"}
    for method, path in BODY_OPERATIONS:
        url = path.format(
            lab=fuzz_site.name, experiment_id="0" * 8, name="nobody", subscription_id="x",
            user="nobody", token_id="x", uid=fuzz_site.run_uid,
        )  # fmt: skip
        answer = fuzz_site.client.request(
            method, url, content=HOSTILE_BODIES[kind], headers=headers
        )
        expected = 413 if kind == "oversized" else 422  # refused before any route
        assert answer.status_code == expected, (method, path, answer.status_code, answer.text)
        assert answer.json()["detail"]
    audit = fuzz_site.client.get("/api/v1/audit?limit=500", headers=fuzz_site.headers("admin"))
    assert audit.status_code == 200
