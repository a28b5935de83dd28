"""The run store: documents round-trip, queries, incomplete runs, event pages, integrity."""

from __future__ import annotations

import sqlite3
import time

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import count, scan
from event_model import pack_event_page

from remotelab.data import RunStore, content_hash
from remotelab.data.database import run_record
from remotelab.data.models import record_hash
from remotelab.errors import RunNotFound, StoreError
from remotelab.settings import get_settings


@pytest.fixture
def RE(store):
    engine = RunEngine({}, context_managers=[])
    engine.documents = []
    engine.subscribe(store)
    engine.subscribe(lambda name, doc: engine.documents.append((name, doc)))
    return engine


def md(experiment_id, submitter="ada", samples=("S001",), plan="measure"):
    return {
        "experiment_id": experiment_id,
        "submitter": submitter,
        "sample_ids": list(samples),
        "plan_name": plan,
        "lab": "simlab",
    }


def test_documents_round_trip_with_arrays(lab, RE, store):
    (uid,) = RE(count([lab["spectrometer"], lab["thermometer"]], num=4), **md("E1"))
    stored = list(store.documents(uid))
    assert [n for n, _ in stored] == [n for n, _ in RE.documents]
    for (_, got), (_, want) in zip(stored, RE.documents, strict=True):
        assert got.keys() == want.keys()
        if "data" in want:
            for key, value in want["data"].items():
                np.testing.assert_array_equal(got["data"][key], value)
                assert type(got["data"][key]) is type(value) or isinstance(value, float)
    table = store.table(uid)
    assert len(table) == 4 and list(table.seq_num) == [1, 2, 3, 4]
    assert table.columns["spectrometer_absorbance"].shape == (4, 201)
    sent = [d for n, d in RE.documents if n == "event"]
    np.testing.assert_array_equal(
        table.columns["thermometer_temperature"],
        [e["data"]["thermometer_temperature"] for e in sent],
    )
    run = store.run(uid[:8])
    assert run.complete and run.status == "success" and run.num_events == 4


def test_queries(lab, RE, store):
    t0 = time.time()
    (a,) = RE(count([lab["thermometer"]], num=2), **md("E1", "ada", ["S001", "S002"], "measure"))
    (b,) = RE(count([lab["balance"]], num=1), **md("E2", "bob", ["S003"], "weigh"))
    (c,) = RE(
        scan([lab["thermometer"]], lab["heater"], 25, 27, 3), **md("E2", "ada", ["S001"], "ramp")
    )
    uids = lambda runs: {r.uid for r in runs}  # noqa: E731
    assert uids(store.runs(experiment_id="E2")) == {b, c}
    assert uids(store.runs(sample_id="S001")) == {a, c}
    assert uids(store.runs(plan_name="weigh")) == {b}
    assert uids(store.runs(submitter="ada")) == {a, c}
    assert uids(store.runs(submitter="ada", experiment_id="E2")) == {c}
    assert uids(store.runs(since=t0)) == {a, b, c}
    assert store.runs(until=t0 - 1) == []
    b_time = store.run(b).time
    assert uids(store.runs(since=b_time, until=b_time)) == {b}
    assert [r.uid for r in store.runs()] == [c, b, a]  # newest first
    assert store.runs(limit=1)[0].uid == c
    assert store.run(c).sample_ids == ("S001",)
    assert store.table(c).columns["heater_setpoint"].tolist() == [25, 26, 27]


def test_unknown_and_ambiguous_runs(store):
    with pytest.raises(RunNotFound, match="no run"):
        store.run("nope")


def test_incomplete_run_is_readable(lab, RE, store):
    """A run whose stop document never came (the process died) is listed as incomplete."""
    docs = []
    probe = RunEngine({}, context_managers=[])
    probe.subscribe(lambda n, d: docs.append((n, d)))
    probe(count([lab["thermometer"]], num=3), **md("E-half"))
    for name, doc in docs[:-1]:  # everything but the stop document
        store(name, doc)
    (run,) = store.runs(experiment_id="E-half")
    assert run.status == "incomplete" and run.num_events == 3
    assert store.runs(complete=False)[0].uid == run.uid
    assert len(store.table(run.uid)) == 3
    assert not store.verify(run.uid).ok


def test_event_pages_are_stored_and_tabled(lab, store):
    docs = []
    probe = RunEngine({}, context_managers=[])
    probe.subscribe(lambda n, d: docs.append((n, d)))
    probe(count([lab["thermometer"]], num=5), **md("E-pages"))
    events = [d for n, d in docs if n == "event"]
    for name, doc in docs:
        if name == "event":
            continue
        if name == "stop":
            store("event_page", pack_event_page(*events))
        store(name, doc)
    uid = docs[0][1]["uid"]
    table = store.table(uid)
    assert list(table.seq_num) == [1, 2, 3, 4, 5]
    np.testing.assert_array_equal(
        table.columns["thermometer_temperature"],
        [e["data"]["thermometer_temperature"] for e in events],
    )
    assert store.run(uid).num_events == 5


def test_content_hash_detects_tampering(lab, RE, store):
    (uid,) = RE(count([lab["thermometer"]], num=3), **md("E-hash"))
    verdict = store.verify(uid)
    assert verdict.ok and verdict.expected == store.run(uid).content_hash
    assert verdict.expected == content_hash(store._raw_documents(uid))
    with sqlite3.connect(store.path) as conn:  # change one stored event behind the store's back
        seq, body = conn.execute(
            "SELECT seq, body FROM documents WHERE run_uid=? AND name='event' LIMIT 1", (uid,)
        ).fetchone()
        conn.execute(
            "UPDATE documents SET body=? WHERE seq=?", (body.replace(b"seq_num", b"seq_nuM"), seq)
        )
    verdict = store.verify(uid)
    assert not verdict.ok and "NOT match" in verdict.detail


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE runs SET exit_status='abort' WHERE uid=:uid",  # an outcome rewritten
        "UPDATE runs SET submitter='mallory' WHERE uid=:uid",
        "UPDATE runs SET num_events=99 WHERE uid=:uid",
        "UPDATE run_samples SET sample_id='S999' WHERE run_uid=:uid",
        "DELETE FROM run_samples WHERE run_uid=:uid",
    ],
)
def test_the_hash_covers_the_runs_record_and_samples(lab, RE, store, sql):
    """Rewriting what the run store says of a run (its exit status, who ran it, its counts,
    its samples) without touching its documents is found by ``verify``."""
    (uid,) = RE(count([lab["thermometer"]], num=3), **md("E-record"))
    assert store.verify(uid).ok and "record matches" in store.verify(uid).detail
    with sqlite3.connect(store.path) as conn:
        conn.execute(sql, {"uid": uid})
    verdict = store.verify(uid)
    assert not verdict.ok and "record" in verdict.detail and "NOT match" in verdict.detail
    assert verdict.problems == [verdict.detail]


def test_a_document_added_to_a_run_after_its_stop_is_found(lab, RE, store):
    (uid,) = RE(count([lab["thermometer"]], num=2), **md("E-stray"))
    with sqlite3.connect(store.path) as conn:  # a forged event, appended with the run's uid
        body = conn.execute(
            "SELECT body FROM documents WHERE run_uid=? AND name='event' LIMIT 1", (uid,)
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO documents(run_uid, name, uid, body) VALUES (?, 'event', 'forged', ?)",
            (uid, body),
        )
    verdict = store.verify(uid)
    assert not verdict.ok and "1 document(s) of this run lie outside its range" in verdict.detail


def test_rewriting_data_and_hashes_together_is_found_by_the_seal(lab, RE, store):
    """Someone with the database but not the keys directory changes an outcome and
    recomputes both hashes: the seal, made with a key outside the database, does not match."""
    (uid,) = RE(count([lab["thermometer"]], num=2), **md("E-seal"))
    assert "its seal matches" in store.verify(uid).detail
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE runs SET exit_status='abort' WHERE uid=?", (uid,))
        record = run_record(conn, uid)
        assert record is not None
        conn.execute("UPDATE runs SET record_hash=? WHERE uid=?", (record_hash(*record), uid))
    verdict = store.verify(uid)
    assert not verdict.ok
    assert verdict.problems == [
        "the run's seal does NOT match its hashes: its data and hashes were rewritten together"
    ]


def test_a_seal_this_machine_cannot_check_is_said_so(lab, RE, store, tmp_path):
    (uid,) = RE(count([lab["thermometer"]], num=2), **md("E-seal-elsewhere"))
    elsewhere = RunStore(store.path, plots=False, seal=False)  # a host without the seal key
    elsewhere.seal_key = b"another key"
    verdict = elsewhere.verify(uid)
    assert verdict.ok and "which this machine lacks: seal not checked" in verdict.detail
    elsewhere.close()


def test_a_store_from_before_record_hashes_still_verifies_its_documents(lab, RE, tmp_path):
    path = tmp_path / "old.sqlite"
    old = RunStore(path, plots=False)
    RE.subscribe(old)
    (uid,) = RE(count([lab["thermometer"]], num=2), **md("E-old"))
    old.close()
    with sqlite3.connect(path) as conn:  # as an older remotelab left it: no record hash
        conn.execute("UPDATE runs SET record_hash=NULL")
    reopened = RunStore(path, plots=False)
    verdict = reopened.verify(uid)
    assert verdict.ok and "no hash" in verdict.detail
    reopened.close()


def test_reopened_store_finishes_a_run_started_by_another_instance(lab, tmp_path):
    docs = []
    probe = RunEngine({}, context_managers=[])
    probe.subscribe(lambda n, d: docs.append((n, d)))
    probe(count([lab["thermometer"]], num=2), **md("E-two"))
    first = RunStore(tmp_path / "r.sqlite", plots=False)
    for name, doc in docs[:3]:
        first(name, doc)
    first.close()
    second = RunStore(tmp_path / "r.sqlite", plots=False)
    for name, doc in docs[3:]:
        second(name, doc)
    uid = docs[0][1]["uid"]
    assert second.verify(uid).ok and second.run(uid).num_events == 2
    second.close()


def test_duplicate_start_and_orphan_documents_are_refused(lab, store):
    docs = []
    probe = RunEngine({}, context_managers=[])
    probe.subscribe(lambda n, d: docs.append((n, d)))
    probe(count([lab["thermometer"]], num=1))
    store(*docs[0])
    with pytest.raises(StoreError, match="already stored"):
        store(*docs[0])
    with pytest.raises(StoreError, match="which run"):
        store("event", {**docs[2][1], "descriptor": "unknown-descriptor"})


def test_default_store_lives_in_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("REMOTELAB_DATA_DIR", str(tmp_path / "lab-data"))
    assert get_settings().store_path == tmp_path / "lab-data" / "runs.sqlite"
    with RunStore() as store:
        assert store.path == tmp_path / "lab-data" / "runs.sqlite"
        assert store.path.exists()
        mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_tiled_sink_without_tiled_says_how_to_get_it():
    import importlib.util

    if importlib.util.find_spec("tiled") is not None:
        pytest.skip("tiled is installed; the missing-package message cannot be shown")
    from remotelab.data import TiledSink

    with pytest.raises(StoreError, match=r"remotelab\[tiled\]"):
        TiledSink("http://127.0.0.1:8000")


def test_runs_of_an_experiment_by_a_unique_prefix_of_its_id(lab, RE, store):
    (first,) = RE(count([lab["thermometer"]], num=1), **md("abcd1234-one"))
    (second,) = RE(count([lab["thermometer"]], num=1), **md("abcd9876-two"))
    assert [r.uid for r in store.runs(experiment_id="abcd12")] == [first]
    assert [r.uid for r in store.runs(experiment_id="abcd9876-two")] == [second]
    assert store.runs(experiment_id="ffff0000") == []  # nothing starts so: no runs, as before
    with pytest.raises(RunNotFound, match="ambiguous"):
        store.runs(experiment_id="abcd")
