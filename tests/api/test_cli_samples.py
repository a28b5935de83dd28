"""Samples through a gateway and on the lab machine: where each is, and a used-up sample
refused by a plan that uses samples up (the titration), with the reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import free_port
from prefect.states import Running
from typer.testing import CliRunner

from remotelab import Client
from remotelab.api.server import GatewayServer
from remotelab.cli.app import app
from remotelab.cli.local import LocalBackend
from remotelab.cli.remote import RemoteBackend
from remotelab.errors import PlanValidationError
from remotelab.queue import samples


@pytest.fixture(scope="module")
def url(site) -> Iterator[str]:
    server = GatewayServer(site.app, port=free_port()).start()
    yield server.url
    server.stop()


def _samples(out: str) -> dict[str, dict]:
    return {s["id"]: s for s in json.loads(out)["samples"]}


def test_samples_are_shown_and_a_used_up_one_refused_on_both_sides(site, url, prefect_api, capsys):
    lab_file = Path(site.lab.source)
    assert lab_file.is_file()
    remote = RemoteBackend(Client(url, site.tokens["manager"], lab=site.name))
    local = LocalBackend(str(lab_file), api=prefect_api, by="mia", role="manager")
    with remote, local:
        remote.show_lab(as_json=True)
        through_gateway = _samples(capsys.readouterr().out)
        local.show_lab(as_json=True)
        here = _samples(capsys.readouterr().out)
        for shown in (through_gateway, here):
            assert shown["T001"]["location"] == "titration" and not shown["T001"]["consumed"]
            assert shown["S001"]["location"] == "rack_a/1"
        # a titration that has started on T001 uses it up: both sides say so, by whom
        first = remote.submit("titration", {"sample_id": "T001"}, priority="normal")
        site.queue.prefect.set_state(first.id, Running(), force=True)
        remote.show_lab(as_json=True)
        through_gateway = _samples(capsys.readouterr().out)
        local.show_lab(as_json=True)
        here = _samples(capsys.readouterr().out)
        for shown in (through_gateway, here):
            assert shown["T001"]["consumed"] and shown["T001"]["consumed_by"] == first.id
            assert not shown["S001"]["consumed"]
        # and a second titration of it is refused at validation, with the reason
        for side in (remote, local):
            with pytest.raises(PlanValidationError, match=rf"'T001' is used up: .*{first.id}"):
                side.submit("titration", {"sample_id": "T001"}, priority="normal")
    token = site.tokens["manager"]
    cli = ["submit", "titration", "-p", "sample_id=T001", "--url", url, "--token", token]
    refused = CliRunner().invoke(app, cli)
    assert refused.exit_code == 2 and "used up" in refused.output
    assert len(refused.output.strip().splitlines()) == 1, refused.output  # no traceback
    table = CliRunner().invoke(app, ["lab", "--url", url, "--token", token])
    assert table.exit_code == 0 and "T001" in table.output and first.id[:8] in table.output


def test_the_samples_endpoint_and_its_client_method(site):
    answer = site.client.get(f"/api/v1/labs/{site.name}/samples", headers=site.headers("observer"))
    assert answer.status_code == 200, answer.text
    shown = {s["id"]: s for s in answer.json()}
    assert shown["T001"]["location"] == "titration" and shown["T001"]["live"] is False
    assert site.client.get(f"/api/v1/labs/{site.name}/samples").status_code == 401


def test_an_edit_to_a_used_up_sample_is_refused_and_the_edited_sample_is_the_one_used(site):
    """The sample used up is the experiment's parameter as edited, not as first submitted."""
    q = site.queue
    queued = q.submit("titration", {"sample_id": "S002"}, submitter="mia", role="manager")
    q.edit(queued.id, {"sample_id": "S003"}, by="mia", role="manager")
    q.prefect.set_state(queued.id, Running(), force=True)
    used = samples.used_up(q)
    assert used["S003"]["experiment"] == queued.id and "S002" not in used
    other = q.submit("titration", {"sample_id": "S004"}, submitter="mia", role="manager")
    with pytest.raises(PlanValidationError, match=r"'S003' is used up"):
        q.edit(other.id, {"sample_id": "S003"}, by="mia", role="manager")
    q.cancel(other.id)
