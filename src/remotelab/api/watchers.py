"""The gateway's background watch of each lab it serves: workers whose heartbeat stopped
are marked lost (:mod:`remotelab.queue.lost`), their experiments Crashed with the run uids
the gateway's run store holds for them."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

from remotelab.queue.lost import (
    LostWorkers,
    LostWorkerWatcher,
    OnLost,
    notifying,
    store_run_uids,
)
from remotelab.settings import worker_lost_after

if TYPE_CHECKING:
    from remotelab.api.gateway import LabService
    from remotelab.data import RunStore


def gateway_name() -> str:
    """How the gateway names itself in the lost-worker messages it writes."""
    return f"the gateway on {socket.gethostname()} (pid {os.getpid()})"


def lost_worker_watchers(
    labs: Iterable[LabService],
    store: RunStore | None,
    *,
    lost_after: float | None = None,
    on_lost: OnLost | None = None,
) -> list[LostWorkerWatcher]:
    """One (not started) lost-worker watcher per lab; ``lost_after`` defaults to the setting
    ``REMOTELAB_WORKER_LOST_AFTER``; ``on_lost`` is the notification hook."""
    after = lost_after or worker_lost_after()
    return [
        LostWorkerWatcher(
            LostWorkers(
                svc.queue.prefect,
                gateway_name(),
                lost_after=after,
                run_uids=store_run_uids(store),
                on_lost=on_lost or notifying(svc.queue.notifier),
            ),
            name=f"remotelab-lost-workers-{svc.name}",
        )
        for svc in labs
    ]


__all__ = ["gateway_name", "lost_worker_watchers"]
