"""``build_worker``: the worker's RunEngine feeds the store, then the publisher (which also
follows pause and resume), then the other subscribers. Built, not started: no Prefect."""

from __future__ import annotations

import pytest
from bluesky import plan_stubs as bps
from bluesky.utils import RunEngineInterrupted

from _wiring_support import RecordingPublisher
from remotelab.worker import LabWorker, build_worker

#: never contacted: the worker is built, not started
NO_PREFECT = "http://127.0.0.1:9/api"


def paused_plan(lab):
    yield from bps.open_run(md={"experiment_id": "E-build"})
    yield from bps.checkpoint()
    yield from bps.pause()
    yield from bps.trigger_and_read([lab["thermometer"]])
    yield from bps.close_run()


def test_store_then_publisher_then_subscribers_and_the_state_is_followed(lab, store):
    publisher = RecordingPublisher(store, "E-build")
    order: list[str] = []
    worker = build_worker(
        lab,
        api_url=NO_PREFECT,
        store=store,
        publisher=publisher,
        subscribers=[lambda name, doc: order.append(name)],
        worker_id="w-build",
    )
    try:
        assert isinstance(worker, LabWorker) and worker.id == "w-build"
        with pytest.raises(RunEngineInterrupted):
            worker.RE(paused_plan(lab))
        assert publisher.states[-1] == "paused"
        worker.RE.resume()
    finally:
        worker.close()
    (run,) = store.runs(experiment_id="E-build")
    assert run.status == "success" and run.num_events == 1
    assert publisher.start_was_stored == [True]
    assert publisher.documents == order == ["start", "descriptor", "event", "stop"]
    assert publisher.states[-1] == "idle"


def test_without_store_or_publisher_the_state_hook_is_left_alone(lab):
    worker = build_worker(lab, api_url=NO_PREFECT, worker_id="w-bare")
    try:
        assert worker.RE.state_hook is None
    finally:
        worker.close()
