"""``build_worker``: the worker's RunEngine feeds the store, then the publisher (which also
follows pause and resume), then the other subscribers. Built, not started: no Prefect."""

from __future__ import annotations

import contextlib
import logging

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


def test_a_normal_abort_is_one_log_line_and_a_failure_keeps_its_traceback(caplog):
    """The worker's terminal (``remotelab demo``, ``remotelab worker``): bluesky's traceback
    for a cancel or an abort asked for is one line; a failing plan keeps its traceback."""
    import threading

    from bluesky import RunEngine

    from remotelab.worker.plan_logs import calm_aborts

    calm_aborts()
    caplog.set_level(logging.DEBUG, logger="bluesky")
    RE = RunEngine({}, context_managers=[])
    started = threading.Event()

    def long():
        yield from bps.open_run()
        started.set()
        for _ in range(10_000):
            yield from bps.sleep(0.01)
        yield from bps.close_run()

    threading.Thread(target=lambda: started.wait(30) and RE.abort("operator")).start()
    with contextlib.suppress(RunEngineInterrupted):
        RE(long())
    aborted = [r for r in caplog.records if r.getMessage().startswith("Run aborted")]
    assert [(r.getMessage(), r.exc_info) for r in aborted] == [("Run aborted (as asked)", None)]
    assert not [r for r in caplog.records if "No open traces" in r.getMessage()]
    caplog.clear()

    def broken():
        yield from bps.open_run()
        raise ValueError("the plan broke")

    with pytest.raises(ValueError):
        RE(broken())
    (failed,) = [r for r in caplog.records if r.getMessage() == "Run aborted"]
    assert failed.exc_info is not None and failed.levelno == logging.ERROR
