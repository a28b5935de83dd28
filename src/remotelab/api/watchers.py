"""The gateway's background watch of each lab it serves: workers whose heartbeat stopped
are marked lost (:mod:`remotelab.queue.lost`), their experiments Crashed with the run uids
the gateway's run store holds for them; runs a worker refused (not signed by the gateway as
they are: :mod:`remotelab.queue.signatures`) are written to the audit log."""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort

from remotelab.queue.lost import (
    LostWorkers,
    LostWorkerWatcher,
    OnLost,
    notifying,
    store_run_uids,
)
from remotelab.queue.signatures import REFUSED_TAG
from remotelab.settings import worker_lost_after

if TYPE_CHECKING:
    from remotelab.api.auth import AuthStore
    from remotelab.api.gateway import LabService
    from remotelab.data import RunStore

log = logging.getLogger("remotelab.gateway")

#: the audit action of a run a worker refused
REFUSED_ACTION = "experiment.refused"
#: how many of a lab's latest refused runs each check reads
REFUSALS_READ = 50
_WORKER = re.compile(r"^\[worker ([^\]\s]+)\]")


class RefusalAudit:
    """Writes each run the lab's workers refused into the gateway's audit log, once: actor
    the worker, status 403, the reason and what the run claimed in its detail."""

    def __init__(self, svc: LabService, auth: AuthStore):
        self.svc = svc
        self.auth = auth
        self._done: set[str] = set()

    def check(self) -> int:
        """Audit the refusals not audited yet; how many were."""
        runs = self.svc.queue.prefect.runs(
            [StateType.CANCELLED],
            tags=[REFUSED_TAG],
            sort=FlowRunSort.END_TIME_DESC,
            limit=REFUSALS_READ,
        )
        written = 0
        for run in runs:
            exp_id = str(run.id)
            if exp_id in self._done:
                continue
            if not self.auth.audit(action=REFUSED_ACTION, target=exp_id, limit=1):
                self._write(run)
                written += 1
            self._done.add(exp_id)
        return written

    def _write(self, run: object) -> None:
        state = getattr(run, "state", None)
        message = (state.message or "") if state is not None else ""
        worker = _WORKER.match(message)
        params = dict(getattr(run, "parameters", None) or {})
        self.auth.record(
            actor=f"worker {worker.group(1)}" if worker else "a worker",
            role="worker",
            action=REFUSED_ACTION,
            status=403,
            target=str(getattr(run, "id", "")),
            lab=self.svc.name,
            detail={
                "reason": message,
                "claimed_plan": str(params.get("plan", "")),
                "claimed_submitter": str(params.get("submitter", "")),
                "claimed_role": str(params.get("role", "")),
            },
        )

    def check_quietly(self) -> None:
        try:
            self.check()
        except Exception as exc:  # Prefect unreachable: the next beat tries again
            log.warning("lab %s: could not audit refused runs: %s", self.svc.name, exc)


def gateway_name() -> str:
    """How the gateway names itself in the lost-worker messages it writes."""
    return f"the gateway on {socket.gethostname()} (pid {os.getpid()})"


def lost_worker_watchers(
    labs: Iterable[LabService],
    store: RunStore | None,
    *,
    lost_after: float | None = None,
    on_lost: OnLost | None = None,
    auth: AuthStore | None = None,
) -> list[LostWorkerWatcher]:
    """One (not started) lost-worker watcher per lab; ``lost_after`` defaults to the setting
    ``REMOTELAB_WORKER_LOST_AFTER``; ``on_lost`` is the notification hook; with ``auth``,
    each beat also audits the runs the lab's workers refused (:class:`RefusalAudit`)."""
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
            also=[RefusalAudit(svc, auth).check_quietly] if auth is not None else [],
        )
        for svc in labs
    ]


__all__ = ["REFUSED_ACTION", "RefusalAudit", "gateway_name", "lost_worker_watchers"]
