"""Which ``Backend`` a command gets, and what this machine's side does without Prefect."""

from __future__ import annotations

import json

import pytest
import typer

from remotelab.cli.backend import open_backend
from remotelab.cli.local import LocalBackend
from remotelab.cli.remote import RemoteBackend
from remotelab.errors import CommandLineError

#: never contacted: these operations need only the lab file or the run store
NO_PREFECT = "http://127.0.0.1:9/api"


def test_this_machine_unless_a_gateway_is_chosen(monkeypatch):
    with open_backend(None, None, api=NO_PREFECT, by="ada") as side:
        assert isinstance(side, LocalBackend) and side.user == "ada" and side.role == "researcher"
    monkeypatch.setenv("REMOTELAB_URL", "http://gateway.example:8000")
    with open_backend(None, None, "simlab") as side:
        assert isinstance(side, RemoteBackend) and side.lab_name() == "simlab"
    with pytest.raises(CommandLineError, match=r"--store only works on this machine"):
        open_backend(None, None, store="runs.sqlite")
    with pytest.raises(CommandLineError, match=r"--mine only works through a gateway"):
        open_backend(None, None, local=True, remote_side={"--mine": True})


def test_the_lab_file_side_needs_no_queue(capsys):
    with LocalBackend(None, api=NO_PREFECT) as side:
        side.devices(as_json=True)
        side.plans(None, as_json=True)
    devices, plans = (json.loads(chunk) for chunk in _json_chunks(capsys.readouterr().out))
    assert "thermometer" in {d["name"] for d in devices}
    assert "measure" in {p["name"] for p in plans}


def test_watch_on_this_machine_needs_an_experiment_and_no_lab():
    with LocalBackend(None) as side, pytest.raises(CommandLineError, match="experiment id"):
        side.watch(None, timeout=1, as_json=True)
    with LocalBackend("sim") as side, pytest.raises(CommandLineError, match="stream proxy"):
        side.watch("E-1", timeout=1, as_json=True)


def _json_chunks(text: str) -> list[str]:
    """Split concatenated pretty-printed JSON documents."""
    decoder, chunks, at = json.JSONDecoder(), [], 0
    while at < len(text):
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            break
        _, end = decoder.raw_decode(text, at)
        chunks.append(text[at:end])
        at = end
    return chunks


def test_what_a_user_or_a_worker_wrote_is_printed_as_written_not_as_markup(capsys):
    from types import SimpleNamespace

    from remotelab.cli import render
    from remotelab.cli.app import user_errors

    said = "[worker w-1] stopped [bold]early[/bold]"
    exp = SimpleNamespace(id="E-1", state=SimpleNamespace(value="completed"), message=said)
    render.experiment_line(exp, as_json=False)
    assert capsys.readouterr().out.strip() == f"experiment E-1: completed {said}"
    with pytest.raises(typer.Exit), user_errors():
        raise CommandLineError(f"no plan {said!r}")
    assert f"no plan {said!r}" in capsys.readouterr().err


def test_a_token_http_cannot_carry_is_said_so_without_showing_it():
    """A token pasted with a line break: the request cannot be made. The error says so (not
    that the gateway is unreachable) and does not print the token."""
    import socket

    from remotelab import Client
    from remotelab.errors import ApiError

    secret = "rl_0123456789ab_" + "s" * 43
    with socket.socket() as listening:  # something takes the connection: the headers fail
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        client = Client(url, f"{secret}\nrest")
        with client, pytest.raises(ApiError) as caught:
            client.whoami()
    text = str(caught.value)
    assert "could not be made" in text and "cannot reach" not in text and secret not in text
