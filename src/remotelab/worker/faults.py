"""Faults that would drain the queue: the worker holds the lab instead.

Some failures are not the experiment's but the lab's — the run store's disk full or the store
unwritable, devices that fail their safe state, or the same error ending experiment after
experiment. Going on would fail (and burn) everything queued behind them, so
:class:`FaultPolicy` says when to hold the lab, and why; the worker then holds it, raises an
alert (the dashboard, ``remotelab lab`` and notifications show it) and claims nothing until
a manager releases the lab. :class:`DiskWatch` reports a filling disk before it is full.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remotelab.errors import SafeStateError, StoreWriteError
from remotelab.queue.models import Experiment, ExperimentState
from remotelab.queue.prefect_lab import LabOnPrefect
from remotelab.worker.alerts import Alerts
from remotelab.worker.claiming import Claimer
from remotelab.worker.outbox import Outbox

log = logging.getLogger("remotelab.worker")

#: experiments in a row that fail with the same error before the lab is held (default)
HOLD_AFTER = 3
#: below this share of free space on the run store's disk, an alert is raised
LOW_DISK_FRACTION = 0.05
#: … or below this many bytes, whichever is larger
LOW_DISK_BYTES = 500 * 2**20


def causes(error: BaseException | None) -> Iterator[BaseException]:
    """``error`` and the errors it was raised from (or during), outermost first."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def lab_fault(error: BaseException | None) -> str | None:
    """Why ``error`` is the lab's fault, not the experiment's (a reason to hold), or None."""
    for cause in causes(error):
        if isinstance(cause, StoreWriteError):
            return str(cause)
        if isinstance(cause, SafeStateError):
            return f"devices failed their safe state: {cause}"
    return None


def kind_of(error: BaseException) -> str:
    """What makes two failures "the same": the innermost error's type and first line."""
    inner = list(causes(error))[-1]
    first = (str(inner).splitlines() or [""])[0][:200]
    return f"{type(inner).__name__}: {first}"


@dataclass
class FaultPolicy:
    """Decides, after each experiment, whether the lab must be held (``hold_after``: the
    same failure this many times in a row; 0 never holds for repeats)."""

    hold_after: int = HOLD_AFTER

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._last: str | None = None
        self._repeats = 0

    def after(self, *, failed: bool, error: BaseException | None) -> str | None:
        """Note how an experiment ended; the reason to hold the lab now, or None."""
        fault = lab_fault(error)
        if fault is not None:
            return fault
        with self._lock:
            if not failed or error is None:
                self._last, self._repeats = None, 0
                return None
            kind = kind_of(error)
            self._repeats = self._repeats + 1 if kind == self._last else 1
            self._last = kind
            if self.hold_after and self._repeats >= self.hold_after:
                repeats, self._repeats = self._repeats, 0
                return f"{repeats} experiments in a row failed with {kind}"
        return None


class DiskWatch:
    """The free space on the disk holding ``path`` (the run store), and whether it is low."""

    def __init__(
        self,
        path: Path,
        *,
        fraction: float = LOW_DISK_FRACTION,
        minimum: int = LOW_DISK_BYTES,
    ):
        self.path = path
        self.fraction = fraction
        self.minimum = minimum

    def low(self) -> str | None:
        """A warning if the disk is getting full, else None (also None if unknown)."""
        where = self.path if self.path.exists() else self.path.parent
        try:
            usage = shutil.disk_usage(where)
        except OSError:
            return None
        floor = max(self.minimum, int(self.fraction * usage.total))
        if usage.free >= floor:
            return None
        return (
            f"the run store's disk is nearly full: {usage.free / 2**20:.0f} MiB free of "
            f"{usage.total / 2**20:.0f} MiB"
        )


class FaultGuard:
    """Holds the lab for a fault — at once on this worker (it claims nothing more), in
    Prefect as soon as Prefect can be told (through the outbox) — with an alert that stays
    until a manager releases the lab; and watches the run store's disk."""

    HOLD = "fault:hold"
    DISK = "fault:disk"

    def __init__(
        self,
        lab: str,
        prefect: LabOnPrefect,
        claimer: Claimer,
        outbox: Outbox,
        alerts: Alerts,
        *,
        hold_after: int = HOLD_AFTER,
        disk: DiskWatch | None = None,
    ):
        self.lab = lab
        self.prefect = prefect
        self.claimer = claimer
        self.outbox = outbox
        self.alerts = alerts
        self.policy = FaultPolicy(hold_after)
        self.disk = disk
        outbox.handlers["hold"] = self._deliver_hold

    @classmethod
    def for_lab(
        cls,
        lab: Any,
        prefect: LabOnPrefect,
        claimer: Claimer,
        outbox: Outbox,
        alerts: Alerts,
        store_path: str | Path | None = None,
    ) -> FaultGuard:
        """The guard of ``lab``, as its lab file's ``unattended`` section sets it up."""
        spec = getattr(getattr(lab, "spec", None), "unattended", None)
        hold_after = spec.hold_after_failures if spec is not None else HOLD_AFTER
        minimum = spec.low_disk_mib * 2**20 if spec is not None else LOW_DISK_BYTES
        disk = DiskWatch(Path(store_path), minimum=minimum) if store_path else None
        return cls(lab.name, prefect, claimer, outbox, alerts, hold_after=hold_after, disk=disk)

    def after(self, exp: Experiment, error: BaseException | None) -> str | None:
        """Note how an experiment ended; hold the lab if it must be. The reason, or None."""
        failed = exp.state in (ExperimentState.failed, ExperimentState.crashed)
        reason = self.policy.after(failed=failed, error=error)
        if reason is not None:
            self.hold(f"{reason} (experiment {exp.id})")
        return reason

    def hold(self, reason: str) -> None:
        """Hold the lab for ``reason``."""
        log.error("holding lab %s: %s", self.lab, reason)
        self.claimer.fault = reason
        self.alerts.raise_(self.HOLD, "lab held", f"lab {self.lab} held: {reason}")
        seq = self.outbox.put("", "hold", {"reason": reason})
        if self.outbox.link.reachable:
            self.outbox.deliver(seq)

    def _deliver_hold(self, payload: dict[str, Any]) -> None:
        self.prefect.set_held(True)
        self.claimer.fault = None  # Prefect holds it now: a release there lets it go
        self.claimer.invalidate(held=True)

    def check(self) -> None:
        """On the heartbeat: close the hold alert once the lab is released; watch the disk."""
        if self.alerts.get(self.HOLD) is not None and self.claimer.fault is None:
            try:
                held = self.prefect.is_held()
            except Exception:
                held = True
            if not held:
                self.alerts.clear(self.HOLD)
        low = self.disk.low() if self.disk is not None else None
        if low is None:
            self.alerts.clear(self.DISK)
        else:
            self.alerts.raise_(self.DISK, "disk", low)


__all__ = [
    "HOLD_AFTER",
    "DiskWatch",
    "FaultGuard",
    "FaultPolicy",
    "causes",
    "kind_of",
    "lab_fault",
]
