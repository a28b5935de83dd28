"""The stream proxy SIGKILLed mid-run and started again: the experiment runs on and is
recorded whole (the run store has every document), and live subscribers get the worker's
status and documents again once the proxy is back, with no one reconnecting by hand."""

from __future__ import annotations

import signal

import pytest
from outage_helpers import announced, read_docs, start_proxy, start_worker
from queue_helpers import docs_of, wait_until, write_lab

from remotelab.data import RunStore
from remotelab.lab import load_lab
from remotelab.queue import ExperimentQueue, ExperimentState
from remotelab.queue.server import free_port
from remotelab.stream import Subscriber

pytestmark = pytest.mark.slow


def test_the_stream_proxy_killed_mid_run(tmp_path, prefect_api):
    lab_file = write_lab(tmp_path)
    lab = load_lab(lab_file, speed=1000)
    queue = ExperimentQueue(lab, api_url=prefect_api)
    queue.ensure()
    ports = free_port(), free_port()
    proxy = start_proxy(*ports, tmp_path / "proxy.log")
    docs = tmp_path / "docs.jsonl"
    worker = start_worker(
        lab_file,
        prefect_api,
        tmp_path / "data",
        docs,
        tmp_path / "worker.log",
        stream=f"tcp://127.0.0.1:{ports[0]}",
    )
    sub = Subscriber(f"tcp://127.0.0.1:{ports[1]}")
    try:
        announced(queue, worker)
        gate = tmp_path / "gate"
        exp = queue.submit("until_file", {"gate": str(gate)}, submitter="ada")

        def live_event(experiment_id: str) -> bool:
            message = sub.receive(timeout=0.5)
            return (
                message is not None
                and message.kind == "status"
                and experiment_id in (message.doc.get("running") or {})
            )

        wait_until(lambda: live_event(exp.id), timeout=60, what="its live status")
        proxy.send_signal(signal.SIGKILL)
        proxy.wait(10)
        wait_until(lambda: len(docs_of(read_docs(docs), "event", exp.id)) > 20, what="more")
        gate.touch()
        done = queue.wait_for(exp.id, timeout=60)
        assert done.state == ExperimentState.completed, done.message
        assert worker.poll() is None
        with RunStore(tmp_path / "data" / "runs.sqlite", plots=False) as store:
            (run,) = store.runs(experiment_id=exp.id)
            assert run.exit_status == "success" and store.verify(run.uid).ok
            kept = len(docs_of(read_docs(docs), "event", exp.id))
            assert run.num_events == kept  # every reading kept while the proxy was gone
        proxy = start_proxy(*ports, tmp_path / "proxy.log")  # back, on the same addresses
        nxt = queue.submit("until_file", {"gate": str(gate) + "-2"}, submitter="ada")
        wait_until(lambda: live_event(nxt.id), timeout=60, what="the live status again")
        (tmp_path / "gate-2").touch()
        assert queue.wait_for(nxt.id, timeout=60).state == ExperimentState.completed
    finally:
        sub.close()
        for proc in (worker, proxy):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        queue.close()
        lab.close()
