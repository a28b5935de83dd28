"""The data commands answer a user's mistakes with one typed line and exit code 2."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from remotelab.cli import app
from remotelab.data import RunStore

RUN_A = "abcd0000-0000-4000-8000-000000000001"
RUN_B = "abcd1111-0000-4000-8000-000000000002"


def _run(store: RunStore, uid: str, t: float) -> None:
    store("start", {"uid": uid, "time": t, "experiment_id": "E-cli"})
    key = {"dtype": "number", "shape": [], "source": "sim"}
    desc = {
        "uid": f"d-{uid}",
        "run_start": uid,
        "name": "primary",
        "time": t,
        "data_keys": {"x": key},
    }
    store("descriptor", desc)
    event = {"uid": f"e-{uid}", "descriptor": desc["uid"], "seq_num": 1, "time": t}
    store("event", {**event, "data": {"x": 1.5}, "timestamps": {"x": t}})
    store("stop", {"uid": f"stop-{uid}", "run_start": uid, "time": t + 1, "exit_status": "success"})


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "runs.sqlite"
    with RunStore(path, plots=False) as store:
        _run(store, RUN_A, 1.0)
        _run(store, RUN_B, 2.0)
    return path


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def assert_user_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = "".join(result.stderr.split())  # rich wraps long lines at the console's width
    assert message.startswith("error:"), result.stderr
    for fragment in fragments:
        assert "".join(fragment.split()) in message, result.stderr


def test_plot_into_a_path_under_a_regular_file(db, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    target = blocker / "run.png"
    result = invoke("plot", RUN_A, "-o", str(target), "--store", str(db))
    assert_user_error(result, f"cannot write {target}", "Not a directory")


def test_plot_onto_a_directory(db, tmp_path):
    result = invoke("plot", RUN_A, "-o", str(tmp_path), "--store", str(db))
    assert_user_error(result, f"cannot write {tmp_path}", "Is a directory")


def test_plot_still_written_when_the_store_cannot_keep_it(db, tmp_path, monkeypatch):
    import sqlite3

    def refuse(self, run_uid, png, name="summary"):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(RunStore, "put_plot", refuse)
    target = tmp_path / "run.png"
    result = invoke("plot", RUN_A, "-o", str(target), "--store", str(db))
    assert result.exit_code == 0, result.output
    assert target.read_bytes().startswith(b"\x89PNG")
    assert "the plot was not kept in the store" in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    ("fmt", "name"), [("csv", "primary.csv"), ("json", "primary.json"), ("hdf5", "h5")]
)
def test_export_file_that_cannot_be_written(db, tmp_path, fmt, name):
    out = tmp_path / "out"
    target = out / f"run-{RUN_A[:8]}.{name}"
    target.mkdir(parents=True)  # a directory where the file goes
    result = invoke("export", RUN_A, "-f", fmt, "-o", str(out), "--store", str(db))
    assert_user_error(result, f"cannot write {target}", "Is a directory")


def test_export_into_a_directory_under_a_regular_file(db, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = invoke("export", RUN_A, "-f", "csv", "-o", str(blocker / "out"), "--store", str(db))
    assert_user_error(result, "cannot create the output directory", "a-file")


@pytest.mark.parametrize("command", ["plot", "verify", "export"])
def test_unknown_and_ambiguous_runs(db, command, tmp_path):
    extra = ["-o", str(tmp_path / "out")] if command == "export" else []
    result = invoke(command, "ffff0000", "--store", str(db), *extra)
    assert_user_error(result, "no run 'ffff0000'")
    result = invoke(command, "abcd", "--store", str(db), *extra)
    assert_user_error(result, "'abcd' is ambiguous")
    result = invoke(command, "abc", "--store", str(db), *extra)
    assert_user_error(result, "no run 'abc'", "needs at least 4 characters")


@pytest.mark.parametrize("command", ["runs", "plot", "verify", "export"])
def test_missing_damaged_or_wrong_store(command, tmp_path, monkeypatch):
    args = [] if command == "runs" else [RUN_A]
    missing = tmp_path / "nowhere.sqlite"
    assert_user_error(invoke(command, *args, "--store", str(missing)), f"no run store at {missing}")

    monkeypatch.setenv("REMOTELAB_DATA_DIR", str(tmp_path / "data"))
    result = invoke(command, *args)
    assert_user_error(result, "no run store at", "REMOTELAB_DATA_DIR")
    assert not (tmp_path / "data").exists()  # a read command creates no store

    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    result = invoke(command, *args, "--store", str(garbage))
    assert_user_error(result, f"cannot open the run store {garbage}", "not a database")

    result = invoke(command, *args, "--store", str(tmp_path))
    assert_user_error(result, f"the run store {tmp_path} is not a file")


def test_store_with_damaged_pages(tmp_path):
    path = tmp_path / "runs.sqlite"
    with RunStore(path, plots=False) as store:
        for i in range(200):
            _run(store, f"{i:08x}-0000-4000-8000-000000000000", float(i))
    raw = bytearray(path.read_bytes())
    page = 4096
    assert len(raw) > 4 * page
    raw[2 * page :] = b"\xa5" * (len(raw) - 2 * page)  # keep the header and schema page
    path.write_bytes(bytes(raw))
    result = invoke("runs", "--store", str(path))
    assert_user_error(result, f"the run store {path}", "malformed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_watch_refuses_an_invalid_address():
    result = invoke("watch", "E1", "--stream", "bogus://x")
    assert_user_error(result, "cannot subscribe to the stream at bogus://x")


def test_watch_says_when_nothing_arrives_from_the_address():
    address = f"tcp://127.0.0.1:{_free_port()}"  # no proxy there
    result = invoke("watch", "E1", "--stream", address, "--timeout", "0.3")
    assert_user_error(result, "did not start", f"nothing at all arrived from {address}")


def test_stream_proxy_refuses_an_address_in_use():
    from remotelab.stream import StreamProxy

    busy = StreamProxy("tcp://127.0.0.1:*", "tcp://127.0.0.1:*")
    try:
        result = invoke("stream-proxy", "--in", busy.in_address, "--out", "tcp://127.0.0.1:*")
    finally:
        busy.stop()
    assert_user_error(result, "cannot bind the stream proxy", "in use")


def test_stream_proxy_refuses_an_invalid_address():
    result = invoke("stream-proxy", "--in", "tcp://127.0.0.1:*", "--out", "bogus://x")
    assert_user_error(result, "cannot bind the stream proxy")
