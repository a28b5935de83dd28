"""Bad input is bounded: oversized, deeply nested and non-finite bodies, and control or
bidirectional characters, are answered 4xx with the gateway's error body naming what was
wrong; nothing of them is stored, and the audit log stays readable."""

from __future__ import annotations

import json

import pytest

from remotelab.settings import get_settings

MEASURE = {"detectors": ["thermometer"], "num": 1}


def submit_raw(site, body: bytes, who: str = "researcher", **headers):
    return site.client.post(
        f"/api/v1/labs/{site.name}/experiments",
        content=body,
        headers={**site.headers(who), "content-type": "application/json", **headers},
    )


def nested(depth: int) -> dict:
    node: dict = {}
    top = node
    for _ in range(depth):
        node["x"] = {}
        node = node["x"]
    return top


def test_an_oversized_body_is_413_whether_declared_or_streamed(site):
    cap = get_settings().max_body
    big = json.dumps({"plan": "measure", "params": {"blob": "y" * (cap + 10)}}).encode()
    declared = submit_raw(site, big)
    assert declared.status_code == 413
    assert declared.json()["type"] == "RequestTooLarge" and str(cap) in declared.json()["detail"]

    def chunks():  # no content-length: counted as it arrives
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    streamed = site.client.post(
        f"/api/v1/labs/{site.name}/experiments",
        content=chunks(),
        headers={**site.headers("researcher"), "content-type": "application/json"},
    )
    assert streamed.status_code == 413


@pytest.mark.parametrize("depth", [40, 900, 100_000])
def test_a_deeply_nested_body_is_422(site, depth):
    if depth == 100_000:  # past the JSON parser's own recursion limit
        body = b'{"plan": "measure", "params": ' + b'{"x": ' * depth + b"1" + b"}" * (depth + 1)
    else:
        body = json.dumps({"plan": "measure", "params": nested(depth)}).encode()
    answer = submit_raw(site, body)
    assert answer.status_code == 422, answer.text
    assert "nests deeper than" in answer.json()["detail"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_number_is_422_not_stored_as_null(site, constant):
    before = len(site.queue.list())
    body = f'{{"plan": "measure", "params": {{"detectors": ["thermometer"], "num": {constant}}}}}'
    answer = submit_raw(site, body.encode())
    assert answer.status_code == 422
    assert constant.lstrip("-") in answer.json()["detail"]
    assert len(site.queue.list()) == before


@pytest.mark.parametrize(
    ("text", "code"),
    [("stop\u202eesrever", "U+202E"), ("a\x00b", "U+0000"), ("x\u2066y", "U+2066")],
)
def test_control_and_bidi_characters_are_refused_where_they_are(site, text, code):
    exp = site.submit("researcher")
    answer = site.client.post(
        f"/api/v1/labs/{site.name}/experiments/{exp}/cancel",
        json={"reason": text},
        headers=site.headers("researcher"),
    )
    assert answer.status_code == 422
    body = answer.json()
    assert code in body["detail"] and body["errors"][0]["param"] == "reason"
    listed = site.client.get(
        f"/api/v1/labs/{site.name}/experiments", params={"submitter": text},
        headers=site.headers("researcher"),
    )  # fmt: skip
    assert listed.status_code == 422 and code in listed.json()["detail"]


def test_ordinary_text_and_submissions_still_pass_and_the_audit_log_reads(site):
    answer = site.client.post(
        f"/api/v1/labs/{site.name}/experiments",
        json={"plan": "measure", "params": MEASURE},
        headers=site.headers("researcher"),
    )
    assert answer.status_code == 201
    exp = answer.json()["id"]
    cancelled = site.client.post(
        f"/api/v1/labs/{site.name}/experiments/{exp}/cancel",
        json={"reason": "wrong sample — über-confident\ttab\nnewline ✓"},
        headers=site.headers("researcher"),
    )
    assert cancelled.status_code == 200
    assert (
        site.client.get("/api/v1/audit?limit=500", headers=site.headers("admin")).status_code == 200
    )
