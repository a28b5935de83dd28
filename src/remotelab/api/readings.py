"""Devices' latest readings where the live stream has carried none since the gateway
started: the last event of the lab's latest complete runs that read them, from the run store.

A complete run never changes, so each is read once and kept (the most recent few).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from remotelab.api.live import reading_value
from remotelab.errors import StoreError

if TYPE_CHECKING:
    from remotelab.data import RunStore

#: how many of a lab's latest complete runs are looked at, and how many runs are kept read
RECENT_RUNS = 10
KEPT_RUNS = 64


class StoredReadings:
    """Device -> its values in the last event of the latest stored run that read it."""

    def __init__(self, runs: int = RECENT_RUNS, kept: int = KEPT_RUNS):
        self.runs = runs
        self.kept = kept
        self._cache: OrderedDict[str, dict[str, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def of_lab(
        self, store: RunStore, lab: str, submitter: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """Each device's latest stored reading on ``lab`` (in a run ``submitter``'s, if
        given): ``time``, ``experiment``, ``values``, ``stored`` (True)."""
        out: dict[str, dict[str, Any]] = {}
        for run in store.runs(lab=lab, submitter=submitter, complete=True, limit=self.runs):
            for device, reading in self._of_run(store, run).items():
                out.setdefault(device, reading)
        return out

    def _of_run(self, store: RunStore, run: Any) -> dict[str, dict[str, Any]]:
        with self._lock:
            if run.uid in self._cache:
                self._cache.move_to_end(run.uid)
                return self._cache[run.uid]
        found = last_readings(store, run.uid, run.experiment_id)
        with self._lock:
            self._cache[run.uid] = found
            while len(self._cache) > self.kept:
                self._cache.popitem(last=False)
        return found


def last_readings(store: RunStore, uid: str, experiment: str | None) -> dict[str, dict[str, Any]]:
    """Device -> its values in the last event of run ``uid``'s primary stream."""
    owners = {
        key: device
        for d in store.descriptors(uid)
        if d.get("name", "primary") == "primary"
        for device, keys in (d.get("object_keys") or {}).items()
        for key in keys
    }
    try:
        table = store.table(uid)
    except StoreError:  # no primary stream: nothing read
        return {}
    if not len(table):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for key, column in table.columns.items():
        device = owners.get(key, key)
        reading = out.setdefault(
            device,
            {"time": float(table.time[-1]), "experiment": experiment, "values": {}, "stored": True},
        )
        value = column[-1]
        reading["values"][key] = reading_value(
            value.item() if isinstance(value, np.generic) else value
        )
    return out


__all__ = ["StoredReadings", "last_readings"]
