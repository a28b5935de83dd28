"""Prefect killed (SIGKILL) and started again on its database, with a worker process serving
the lab: idle, mid-experiment, and with the worker itself killed during the outage.

The worker must not die of it, must say so in its status, must record an experiment that
ended during the outage as it ended (never crashed), and must go on claiming afterwards.
"""

from __future__ import annotations

import signal

import pytest
from outage_helpers import (
    Outage,
    alert_messages,
    announced,
    labels,
    read_docs,
    start_worker,
    status,
    summaries,
)
from queue_helpers import docs_of, wait_until, write_lab

from remotelab.data import RunStore
from remotelab.lab import load_lab
from remotelab.queue import ExperimentQueue, ExperimentState
from remotelab.queue.control import ControlAddress

pytestmark = pytest.mark.slow

#: the worker's retry cap in these tests (REMOTELAB_RETRY_CAP)
CAP = 1.0


@pytest.fixture
def outage(tmp_path):
    o = Outage(tmp_path / "prefect")
    o.start()
    yield o
    o.stop()


@pytest.fixture
def setup(tmp_path, outage):
    lab_file = write_lab(tmp_path)
    lab = load_lab(lab_file, speed=1000)
    queue = ExperimentQueue(lab, api_url=outage.api_url)
    queue.ensure()
    procs = []

    def worker(name: str = "w"):
        proc = start_worker(
            lab_file,
            outage.api_url,
            tmp_path / "data",
            tmp_path / "docs.jsonl",
            tmp_path / f"{name}.log",
        )
        procs.append(proc)
        me = announced(queue, proc)
        return proc, ControlAddress(me["control"], me["control_key"])

    yield queue, worker, tmp_path
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    queue.close()
    lab.close()


def ride_out(outage: Outage, endpoint: str) -> None:
    """Kill Prefect and keep it down until the worker's back-off has reached its cap (it has
    failed again and again, as in an outage of any length), then start it again."""
    outage.kill()
    wait_until(
        lambda: any("Prefect unreachable since" in m for m in alert_messages(endpoint)),
        timeout=60,
        what="the worker to say Prefect is unreachable",
    )
    wait_until(
        lambda: status(endpoint)["prefect"]["retry_in"] >= CAP,
        timeout=60,
        what="the worker's back-off to reach its cap",
    )
    outage.start()


def test_an_idle_worker_rides_out_the_outage_and_claims_again(setup, outage):
    queue, worker, tmp = setup
    proc, endpoint = worker()
    ride_out(outage, endpoint)
    exp = queue.submit("steps", {"n": 3}, submitter="ada")
    assert queue.wait_for(exp.id, timeout=60).state == ExperimentState.completed
    wait_until(lambda: status(endpoint)["prefect"]["reachable"], what="the link back up")
    assert not alert_messages(endpoint)  # the alert closed with the outage
    assert proc.poll() is None
    log = (tmp / "w.log").read_text()
    assert "Prefect unreachable" in log and "Prefect reachable again" in log


def test_an_experiment_ending_during_the_outage_is_recorded_as_it_ended(setup, outage):
    queue, worker, tmp = setup
    proc, endpoint = worker()
    gate = tmp / "gate"
    exp = queue.submit("until_file", {"gate": str(gate)}, submitter="ada")
    after = queue.submit("steps", {"n": 3}, submitter="ada")
    docs = tmp / "docs.jsonl"
    wait_until(lambda: docs_of(read_docs(docs), "event", exp.id), what="it runs")
    outage.kill()
    wait_until(
        lambda: any("Prefect unreachable" in m for m in alert_messages(endpoint)),
        timeout=60,
        what="the worker to notice",
    )
    gate.touch()  # the plan ends while Prefect is down: nothing it does needs Prefect
    wait_until(lambda: docs_of(read_docs(docs), "stop", exp.id), what="its stop document")
    wait_until(lambda: status(endpoint)["prefect"]["retry_in"] >= CAP, what="the back-off")
    assert proc.poll() is None  # it did not die of it
    outage.start()
    done = queue.wait_for(exp.id, timeout=60)
    assert done.state == ExperimentState.completed, done.message
    (start,) = docs_of(read_docs(docs), "start", exp.id)
    assert done.run_uids == [start["uid"]] and done.exit_status == "success"
    assert queue.wait_for(after.id, timeout=60).state == ExperimentState.completed
    wait_until(lambda: summaries(queue, exp.id), what="its summary artifact")  # delivered too
    assert start["uid"] in str(labels(queue, exp.id))
    with RunStore(tmp / "data" / "runs.sqlite", plots=False) as store:
        (run,) = store.runs(experiment_id=exp.id)
        assert run.exit_status == "success" and store.verify(run.uid).ok
    assert len(summaries(queue, exp.id)) == 1


def test_records_of_a_worker_killed_during_the_outage_are_delivered_by_the_next(setup, outage):
    queue, worker, tmp = setup
    proc, endpoint = worker("first")
    gate = tmp / "gate"
    exp = queue.submit("until_file", {"gate": str(gate)}, submitter="ada")
    docs = tmp / "docs.jsonl"
    wait_until(lambda: docs_of(read_docs(docs), "event", exp.id), what="it runs")
    outage.kill()
    wait_until(
        lambda: any("Prefect unreachable" in m for m in alert_messages(endpoint)),
        timeout=60,
        what="the worker to notice",
    )
    gate.touch()
    wait_until(lambda: docs_of(read_docs(docs), "stop", exp.id), what="its stop document")
    wait_until(lambda: status(endpoint)["prefect"]["retry_in"] >= CAP, what="the back-off")
    proc.send_signal(signal.SIGKILL)  # its outcome exists only in its outbox now
    proc.wait(10)
    assert (tmp / "data" / "outbox").is_dir()
    outage.start()
    assert queue.get(exp.id).state == ExperimentState.running  # Prefect cannot know yet
    worker("second")  # delivers what the first left, before it looks for the crashed
    done = queue.wait_for(exp.id, timeout=60)
    assert done.state == ExperimentState.completed, done.message
    (start,) = docs_of(read_docs(docs), "start", exp.id)
    assert done.run_uids == [start["uid"]]
    wait_until(lambda: summaries(queue, exp.id), what="its summary artifact")
    assert len(summaries(queue, exp.id)) == 1  # delivered once
    nxt = queue.submit("steps", {"n": 2}, submitter="ada")
    assert queue.wait_for(nxt.id, timeout=60).state == ExperimentState.completed


def test_a_burst_ending_across_an_outage_keeps_every_record(setup, outage):
    """Twenty short experiments; Prefect killed while they pour out: after it is back, each
    is completed with its run uids, labels and exactly one summary."""
    queue, worker, tmp = setup
    proc, endpoint = worker()
    burst = [queue.submit("steps", {"n": 2}, submitter="ada") for _ in range(20)]
    docs = tmp / "docs.jsonl"
    wait_until(lambda: len(docs_of(read_docs(docs), "stop")) >= 3, what="the burst under way")
    outage.kill()
    wait_until(lambda: status(endpoint)["prefect"]["retry_in"] >= CAP, what="the back-off")
    outage.start()
    for exp in burst:
        done = queue.wait_for(exp.id, timeout=120)
        assert done.state == ExperimentState.completed, done.message
        (start,) = docs_of(read_docs(docs), "start", exp.id)
        assert done.run_uids == [start["uid"]]
    for exp in burst:
        wait_until(lambda e=exp: len(summaries(queue, e.id)) == 1, what="one summary each")
        assert start_uid_in_labels(queue, exp.id, docs)
    assert proc.poll() is None


def start_uid_in_labels(queue, experiment_id: str, docs) -> bool:
    (start,) = docs_of(read_docs(docs), "start", experiment_id)
    return start["uid"] in str(labels(queue, experiment_id))
