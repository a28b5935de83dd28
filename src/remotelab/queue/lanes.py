"""What a lab's workers say they run: running experiments, device reservations and waits.

A worker's ``Status`` reply (:mod:`remotelab.queue.commands`) carries, since workers run
several experiments at once, ``running`` (one entry per running experiment), ``reservations``
(resource → holder, since, block, waiters), ``waiting`` (experiment → why it waits) and
``concurrency``. A worker from before that answers with ``current`` only: it reads as
running that one experiment and holding nothing. :func:`merge` joins the workers of a lab.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def running_of(info: dict[str, Any], worker_id: str) -> list[dict[str, Any]]:
    """The experiments a worker's status says it runs, each with ``worker`` set."""
    listed = info.get("running")
    if isinstance(listed, list):
        entries = [dict(e) for e in listed if isinstance(e, dict) and e.get("id")]
    elif info.get("current"):
        entries = [
            {
                "id": info["current"],
                "re_state": info.get("re_state") or None,
                "question": info.get("question"),
            }
        ]
    else:
        entries = []
    for entry in entries:
        entry["worker"] = worker_id
        entry["id"] = str(entry["id"])
    return entries


def merge(statuses: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One view of a lab from its workers' ``(worker id, status info)``: ``running``,
    ``reservations``, ``waiting``, ``concurrency`` (summed), ``workers`` (their ids) and
    ``samples`` (``at``: sample → location, ``consumed``: sample → why, as they say)."""
    view: dict[str, Any] = {
        "running": [],
        "reservations": {},
        "waiting": {},
        "concurrency": 0,
        "workers": [],
        "samples": {"at": {}, "consumed": {}},
    }
    for worker_id, info in statuses:
        view["workers"].append(worker_id)
        for key, said in (info.get("samples") or {}).items():
            view["samples"].setdefault(key, {}).update(dict(said or {}))
        view["running"].extend(running_of(info, worker_id))
        view["reservations"].update(dict(info.get("reservations") or {}))
        view["waiting"].update({str(k): str(v) for k, v in (info.get("waiting") or {}).items()})
        concurrency = info.get("concurrency")
        view["concurrency"] += concurrency if isinstance(concurrency, int) else 1
    return view


def running_ids(view: dict[str, Any]) -> list[str]:
    """The ids of the running experiments of a merged view, in the workers' order."""
    return list(dict.fromkeys(e["id"] for e in view["running"]))


__all__ = ["merge", "running_ids", "running_of"]
