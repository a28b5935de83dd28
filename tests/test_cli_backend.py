"""Which ``Backend`` a command gets, and what this machine's side does without Prefect."""

from __future__ import annotations

import json

import pytest

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
