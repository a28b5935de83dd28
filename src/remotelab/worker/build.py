"""Build a lab worker wired to the run store and the live stream: one way for every caller.

``remotelab worker`` and ``remotelab demo`` (:class:`remotelab.embedded.Embedded`) both
build their worker here, so both keep every document in the store before anything else
sees it, both publish the RunEngine's pause and resume on the stream, and both log a normal
abort in one line (:mod:`remotelab.worker.plan_logs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from remotelab.data.wiring import Callback, EngineStateFollower, attach
from remotelab.queue.lost import store_run_uids
from remotelab.worker.lab_worker import LabWorker
from remotelab.worker.plan_logs import calm_aborts


def build_worker(
    lab: Any,
    *,
    api_url: str | None = None,
    store: Callback | None = None,
    publisher: EngineStateFollower | None = None,
    subscribers: Sequence[Callback] = (),
    **worker_options: Any,
) -> LabWorker:
    """A :class:`LabWorker` on ``lab`` whose RunEngines (one per lane) feed ``store``, then
    ``publisher``, then each of ``subscribers``.

    ``store`` is a :class:`~remotelab.data.RunStore` (or None: keep nothing), ``publisher``
    a :class:`~remotelab.stream.StreamPublisher` (or None: publish nothing); the publisher
    also follows the RunEngine's state, so the stream reports ``paused`` while a plan is
    paused. ``worker_options`` are :class:`LabWorker`'s other keywords (``registry``,
    ``control_bind``, ``poll_interval``, ``grace``, ``data_url``, ``worker_id``…). Starting
    the worker, and closing it, the store and the publisher, stay with the caller.
    """
    path = getattr(store, "path", None)
    if path is not None:  # its disk is watched
        worker_options.setdefault("store_path", path)
    if store is not None and hasattr(store, "runs"):  # peers marked lost: their run uids
        worker_options.setdefault("run_uids", store_run_uids(store))
    worker = LabWorker(lab, api_url=api_url, **worker_options)
    calm_aborts()  # a normal abort is one log line, not bluesky's traceback
    for lane in worker.lanes:
        # the store first: a document is durable before any other callback sees it
        attach(
            lane.RE,
            store=store,
            publisher=publisher,
            follow_state=True,
            experiment=lane.experiment_id,
        )
        for callback in subscribers:
            lane.RE.subscribe(callback)
    update_status = getattr(publisher, "update_status", None)
    if update_status is not None:  # the worker's alerts in its live status
        worker.alerts.on_change.append(
            lambda alerts: update_status(alerts=[a.to_value() for a in alerts])
        )
    return worker


__all__ = ["build_worker"]
