"""A worker SIGKILLed mid-experiment and never restarted: the gateway, or a live peer worker
of the lab, marks it lost — its experiment Crashed with its run uids, its device slots
freed, its announcement gone, one notification — and the queue goes on on another worker.

Real processes on a real Prefect server; every wait is on a condition.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
from prefect.exceptions import ObjectNotFound
from queue_helpers import docs_of, wait_until
from reliability_helpers import read_docs

from remotelab.api import AuthStore, LabService, create_app
from remotelab.api.server import GatewayServer
from remotelab.api.watchers import gateway_name
from remotelab.data import RunStore
from remotelab.lab import load_lab
from remotelab.queue import ExperimentQueue, ExperimentState
from remotelab.queue.device_slots import slot_name
from remotelab.queue.lost import store_run_uids
from remotelab.queue.messages import is_lost_message, lost_marker
from remotelab.queue.models import Experiment
from remotelab.queue.server import free_port

#: seconds of silence after which the watchers of these tests mark a worker lost: well above
#: the 2 s heartbeat, so a live worker on a loaded machine is never taken for lost
LOST_AFTER = 8.0
LONG = {"n": 100_000, "step_s": 0.01, "stir": 400}
DEVICES = ("stirrer", "thermometer")  # what the `steps` plan drives

Calls = list[tuple[str, str, list[str]]]


def active_slots(exq: ExperimentQueue, devices=DEVICES) -> list[int]:
    client = exq.prefect.client
    taken = []
    for device in devices:
        try:
            limit = client.read_global_concurrency_limit_by_name(slot_name(exq.name, device))
        except ObjectNotFound:  # made afresh and not taken since
            taken.append(0)
        else:
            taken.append(limit.active_slots)
    return taken


def hook(calls: Calls, who: str) -> Callable[[Any, list[Experiment]], None]:
    """The notification hook: records who was told of which lost worker and experiments."""
    return lambda info, crashed: calls.append((who, info.id, [e.id for e in crashed]))


@pytest.fixture
def gateway(lab_file, prefect_api, tmp_path):
    """``start(on_lost)``: the gateway on this lab, watching its workers, until the end."""
    served: list[tuple[GatewayServer, Any, Any, Any]] = []

    def start(on_lost) -> GatewayServer:
        lab = load_lab(lab_file, connect=False)
        queue = ExperimentQueue(lab, api_url=prefect_api)
        store = RunStore(tmp_path / "runs.sqlite", plots=False)
        app = create_app(
            auth=AuthStore(tmp_path / "auth.sqlite"),
            labs=[LabService(lab, queue)],
            store=store,
            lost_after=LOST_AFTER,
            on_lost=on_lost,
        )
        server = GatewayServer(app, port=free_port()).start()
        served.append((server, queue, store, lab))
        return server

    yield start
    for server, queue, store, lab in served:
        server.stop()
        queue.close()
        store.close()
        lab.close()


def kill_mid_experiment(exq, worker_process, tmp_path) -> tuple[Any, Experiment, dict]:
    """A worker process running a long experiment, its run uid announced and its devices'
    slots taken: the process, the experiment and the worker's announcement."""
    docs = tmp_path / "docs.jsonl"
    proc = worker_process(docs)
    victim = exq.submit("steps", LONG, submitter="ada")
    wait_until(lambda: len(docs_of(read_docs(docs), "event", victim.id)) >= 3, what="events")

    def announced() -> dict | None:
        mine = [w for w in exq.workers(fresh=True) if w["pid"] == proc.pid]
        if mine and any(r.get("runs") for r in mine[0]["running"]) and mine[0]["leases"]:
            return mine[0]
        return None

    info = wait_until(announced, what="the worker to announce its run and its leases")
    assert active_slots(exq) == [1, 1]
    return proc, victim, info


def assert_lost(exq, tmp_path, victim, info, by: str) -> Experiment:
    """The victim was marked Crashed once, as lost, by ``by``, with its stored run uids; the
    lost worker's announcement is gone and its record says who marked it."""
    record = wait_until(
        lambda: (r := exq.prefect.lost(info["id"])) is not None and r.done and r,
        timeout=120,
        what="the lost worker's record, complete",
    )
    assert record.by == by and record.experiments == [victim.id]
    crashed = exq.get(victim.id)
    assert crashed.state == ExperimentState.crashed
    assert is_lost_message(crashed.message), crashed.message
    assert lost_marker(crashed.message) == by
    assert crashed.worker == info["id"]
    with RunStore(tmp_path / "runs.sqlite", plots=False) as store:
        stored = [r.uid for r in store.runs(experiment_id=victim.id)]
    assert stored and crashed.run_uids == stored
    assert crashed.run_uids == info["running"][0]["runs"]
    states = exq.prefect.history(UUID(victim.id))
    assert [s.type.value for s in states].count("CRASHED") == 1
    assert exq.prefect.announcement(info["id"]) is None
    return crashed


def test_gateway_marks_a_killed_worker_lost_and_the_queue_goes_on(
    exq, lab, worker_process, start_worker, gateway, tmp_path
):
    proc, victim, info = kill_mid_experiment(exq, worker_process, tmp_path)
    second = start_worker(lab, lost_after=600.0)  # alive throughout; leaves the marking
    nxt = exq.submit("steps", {"n": 2}, submitter="ada")
    calls: Calls = []
    gateway(hook(calls, "gateway"))
    proc.kill()
    proc.wait(10)
    crashed = assert_lost(exq, tmp_path, victim, info, gateway_name())
    # its slots were freed: the next experiment runs on the second worker
    done = exq.wait_for(nxt.id, timeout=120)
    assert done.state == ExperimentState.completed and done.worker == second.worker.id
    wait_until(lambda: active_slots(exq) == [0, 0], what="the slots to come free")
    assert calls == [("gateway", info["id"], [victim.id])]
    # a worker starting now reconciles with what the gateway decided: nothing marked again
    third = start_worker(lab)
    assert third.crashed == []
    assert exq.get(victim.id).message == crashed.message
    assert len(calls) == 1


def test_a_peer_worker_marks_a_killed_worker_lost_when_no_gateway_runs(
    exq, lab, worker_process, start_worker, tmp_path
):
    proc, victim, info = kill_mid_experiment(exq, worker_process, tmp_path)
    calls: Calls = []
    store = RunStore(tmp_path / "runs.sqlite", plots=False)
    try:
        peer = start_worker(
            lab,
            lost_after=LOST_AFTER,
            on_lost=hook(calls, "peer"),
            run_uids=store_run_uids(store),
        )
        assert peer.crashed == []  # the victim's worker is alive when the peer starts
        nxt = exq.submit("steps", {"n": 2}, submitter="ada")
        proc.kill()
        proc.wait(10)
        assert_lost(exq, tmp_path, victim, info, f"worker {peer.worker.id}")
        done = exq.wait_for(nxt.id, timeout=120)
        assert done.state == ExperimentState.completed and done.worker == peer.worker.id
        assert calls == [("peer", info["id"], [victim.id])]
    finally:
        store.close()


def test_gateway_and_peer_both_watching_mark_once(
    exq, lab, worker_process, start_worker, gateway, tmp_path
):
    proc, victim, info = kill_mid_experiment(exq, worker_process, tmp_path)
    calls: Calls = []
    peer = start_worker(lab, lost_after=LOST_AFTER, on_lost=hook(calls, "peer"))
    gateway(hook(calls, "gateway"))
    proc.kill()
    proc.wait(10)
    crashed = exq.wait_for(victim.id, timeout=120)
    by = lost_marker(crashed.message) or ""
    assert by in (gateway_name(), f"worker {peer.worker.id}")
    assert_lost(exq, tmp_path, victim, info, by)
    # both keep watching: whoever lost the race marks nothing, now or later
    wait_until(lambda: len(calls) == 1, what="one notification")
    nxt = exq.submit("steps", {"n": 2}, submitter="ada")
    assert exq.wait_for(nxt.id, timeout=120).state == ExperimentState.completed
    assert len(calls) == 1 and calls[0][1:] == (info["id"], [victim.id])


def test_a_worker_marked_lost_that_comes_back_announces_again_and_records_its_outcome(
    exq, worker_process, gateway, tmp_path
):
    """Frozen (SIGSTOP) past the lost time, then thawed: the gateway marked it lost meanwhile;
    back, it says so, announces itself again, removes its record, and the outcome it records
    replaces the lost mark."""
    docs = tmp_path / "docs.jsonl"
    proc = worker_process(docs)
    exp = exq.submit("steps", {"n": 1000, "step_s": 0.01, "stir": 400}, submitter="ada")
    wait_until(lambda: len(docs_of(read_docs(docs), "event", exp.id)) >= 3, what="events")
    (info,) = [w for w in exq.workers(fresh=True) if w["pid"] == proc.pid]
    calls: Calls = []
    gateway(hook(calls, "gateway"))
    proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(
            lambda: (r := exq.prefect.lost(info["id"])) is not None and r.done,
            timeout=120,
            what="the frozen worker to be marked lost",
        )
        assert is_lost_message(exq.get(exp.id).message)
    finally:
        proc.send_signal(signal.SIGCONT)
    wait_until(
        lambda: (
            exq.prefect.announcement(info["id"]) is not None
            and exq.prefect.lost(info["id"]) is None
        ),
        timeout=120,
        what="the worker to announce itself again",
    )
    done = wait_until(
        lambda: (e := exq.get(exp.id)).state != ExperimentState.crashed and e.state.finished and e,
        timeout=300,
        what="the worker's own outcome",
    )
    # its own outcome (the plan may have failed: its devices' timeouts ran on while frozen)
    assert done.state in (ExperimentState.completed, ExperimentState.failed)
    assert not is_lost_message(done.message)
    assert calls == [("gateway", info["id"], [exp.id])]
    log = (tmp_path / "worker0.log").read_text()
    assert "was marked lost by the gateway" in log
