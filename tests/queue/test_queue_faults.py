"""Faults: SIGTERM and SIGKILL to a worker process; a crashed experiment is not re-run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.exceptions import ObjectNotFound
from queue_helpers import docs_of, subprocess_env, wait_until, write_lab

from remotelab.data import RunStore
from remotelab.lab import load_lab
from remotelab.queue import ExperimentQueue, ExperimentState
from remotelab.queue.device_slots import slot_name

LONG = {"n": 100_000, "step_s": 0.01, "stir": 400}


def active_slots(exq: ExperimentQueue, names: list[str]) -> list[int]:
    """How many slots of each Prefect concurrency limit are taken (none of a limit a worker
    starting alone on the lab made afresh, and that nobody has taken since)."""
    client = exq.prefect.client
    taken = []
    for name in names:
        try:
            taken.append(client.read_global_concurrency_limit_by_name(name).active_slots)
        except ObjectNotFound:
            taken.append(0)
    return taken


def read_docs(path: Path) -> list:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(tuple(json.loads(line)))
        except json.JSONDecodeError:
            continue  # a line cut by a kill
    return out


@pytest.fixture
def worker_process(lab_file, prefect_api, tmp_path, exq):
    procs: list[subprocess.Popen] = []

    def start(docs: Path, lab_file: Path = lab_file, queue=exq) -> subprocess.Popen:
        env = {**subprocess_env(prefect_api, tmp_path), "QUEUE_TEST_DOCS": str(docs)}
        log = open(tmp_path / f"worker{len(procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "remotelab",
                "worker",
                "--lab",
                str(lab_file),
                "--speed",
                "1000",
                "--poll",
                "0.5",
                "--subscriber",
                "queue_test_plans:jsonl_documents",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        procs.append(proc)
        wait_until(
            lambda: (
                any(w["pid"] == proc.pid for w in queue.workers(fresh=True))
                or proc.poll() is not None
            ),
            timeout=90,
            what="the worker to announce itself",
        )
        assert proc.poll() is None, (tmp_path / "worker0.log").read_text()[-2000:]
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_sigterm_aborts_current_experiment_safely(exq, worker_process, tmp_path):
    docs = tmp_path / "docs.jsonl"
    proc = worker_process(docs)
    exp = exq.submit("steps", LONG, submitter="ada")
    wait_until(lambda: docs_of(read_docs(docs), "event", exp.id), what="events")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    done = exq.get(exp.id)
    assert done.state == ExperimentState.cancelled
    assert "SIGTERM" in done.message and "devices safe" in done.message
    (stop,) = docs_of(read_docs(docs), "stop", exp.id)
    assert stop["exit_status"] == "abort"
    assert exq.workers(fresh=True) == []  # it withdrew its announcement


def test_sigkill_then_restart_marks_crashed_keeps_data_and_goes_on(
    exq, lab, worker_process, start_worker, tmp_path
):
    docs = tmp_path / "docs.jsonl"
    proc = worker_process(docs)
    victim = exq.submit("steps", LONG, submitter="ada")
    nxt = exq.submit("steps", {"n": 2}, submitter="ada")
    wait_until(lambda: len(docs_of(read_docs(docs), "event", victim.id)) >= 3, what="events")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert exq.get(victim.id).state == ExperimentState.running  # Prefect cannot know
    kept = read_docs(docs)
    w = start_worker(lab)  # another worker for the lab starts
    assert [e.id for e in w.crashed] == [victim.id]
    crashed = exq.get(victim.id)
    assert crashed.state == ExperimentState.crashed and "not re-run" in crashed.message
    # every document emitted before the kill is still there, in the worker's run store too
    assert len(docs_of(kept, "start", victim.id)) == 1
    assert len(docs_of(kept, "event", victim.id)) >= 3
    with RunStore(tmp_path / "runs.sqlite", plots=False) as store:
        (run,) = store.runs(experiment_id=victim.id)
        assert run.status == "incomplete"
        stored = [name for name, _ in store.documents(run.uid)]
        assert stored.count("event") >= len(docs_of(kept, "event", victim.id))
    # the devices were driven to their safe state, and the queue goes on
    assert lab["stirrer"].setpoint.get() == 0 and lab["heater"].setpoint.get() == 25
    assert exq.wait_for(nxt.id).state == ExperimentState.completed
    assert w.docs("start", victim.id) == []  # the crashed one was not re-run
    assert exq.get(victim.id).state == ExperimentState.crashed


def test_sigkill_with_two_running_crashes_both_frees_every_device_and_goes_on(
    prefect_api, worker_process, start_worker, tmp_path
):
    lab_file = write_lab(tmp_path, concurrency=3)
    lab = load_lab(lab_file, speed=1000)
    exq = ExperimentQueue(lab, api_url=prefect_api)
    try:
        docs = tmp_path / "docs.jsonl"
        proc = worker_process(docs, lab_file, exq)
        stirred = exq.submit("steps", LONG, submitter="ada")
        weighed = exq.submit("read_steps", {"sensor": "balance", "n": 100_000}, submitter="bob")
        for exp in (stirred, weighed):
            wait_until(
                lambda e=exp: len(docs_of(read_docs(docs), "event", e.id)) >= 3, what="events"
            )
        # the worker has announced what it runs (and its leases on the devices)
        wait_until(
            lambda: [len(w["running"]) for w in exq.workers(fresh=True)] == [2],
            what="the worker to announce both",
        )
        slots = [slot_name(lab.name, d) for d in ("stirrer", "thermometer", "balance")]
        assert active_slots(exq, slots) == [1, 1, 1]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        kept = read_docs(docs)
        w = start_worker(lab)  # the lab's worker starts again
        assert {e.id for e in w.crashed} == {stirred.id, weighed.id}
        for exp in (stirred, weighed):
            crashed = exq.get(exp.id)
            assert crashed.state == ExperimentState.crashed and "not re-run" in crashed.message
            assert len(docs_of(kept, "start", exp.id)) == 1
            with RunStore(tmp_path / "runs.sqlite", plots=False) as store:
                (run,) = store.runs(experiment_id=exp.id)
                assert run.status == "incomplete"
        # every device safe, every reservation freed (in Prefect too), and the queue goes on
        assert lab["stirrer"].setpoint.get() == 0 and lab["heater"].setpoint.get() == 25
        assert not w.worker.book.snapshot()
        nxt = exq.submit("steps", {"n": 2}, submitter="ada")
        assert exq.wait_for(nxt.id).state == ExperimentState.completed
        # the worker gives its slots back in the background once nothing more starts
        wait_until(lambda: active_slots(exq, slots) == [0, 0, 0], what="the slots to be free")
    finally:
        exq.close()
        lab.close()
