"""The dispatcher: which queued experiment starts next, given the devices that are free.

Queued experiments are taken in queue order (priority, then position). The first whose
devices (and samples) are all free is reserved and claimed; one that waits for a busy device
holds up none behind it that need other devices, and is never starved: every resource it
needs is *protected* — no later experiment may take it — until it has started. Reservations
live in the worker's book (:mod:`remotelab.lab.reservations`) and are mirrored, by lease, in
Prefect's global concurrency limits (:mod:`remotelab.queue.device_slots`), which another
process of the lab respects too (:class:`DeviceLeases`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prefect.client.schemas.objects import FlowRun

from remotelab.lab.reservations import Reservations
from remotelab.queue.device_slots import DeviceSlots
from remotelab.worker.claiming import Claimer
from remotelab.worker.lanes import Booking, Need
from remotelab.worker.tasks import TaskThread

log = logging.getLogger("remotelab.worker")


def clock_text(at: float | None) -> str:
    """A book time as the wall-clock time of day."""
    return datetime.fromtimestamp(at).strftime("%H:%M:%S") if at is not None else "?"


def iso(at: float | None) -> str | None:
    """A book time as an ISO date."""
    return datetime.fromtimestamp(at, UTC).isoformat() if at is not None else None


def reservations_view(book: Reservations) -> dict[str, dict[str, Any]]:
    """The book's reservations as the worker announces them: resource → holder, since when,
    whether for a block of steps, and the experiments waiting for it (since when)."""
    return {
        resource: {
            "holder": entry.get("holder"),
            "since": iso(entry.get("since")),
            "block": bool(entry.get("block")),
            "waiters": [
                {"experiment": w["holder"], "since": iso(w.get("since"))}
                for w in entry.get("waiters", [])
            ],
        }
        for resource, entry in book.snapshot().items()
    }


def block_waits(book: Reservations) -> dict[str, str]:
    """Running experiments whose plan waits for a shared device: experiment → why."""
    waits: dict[str, list[str]] = {}
    for resource, entry in book.snapshot().items():
        for waiter in entry.get("waiters", []):
            holder = entry.get("holder")
            held = f", held by {holder} since {clock_text(entry.get('since'))}" if holder else ""
            waits.setdefault(waiter["holder"], []).append(f"{resource}{held}")
    return {exp: "waiting for " + "; ".join(parts) for exp, parts in waits.items()}


def booking_view(book: Reservations, waiting: dict[str, str]) -> dict[str, Any]:
    """What the worker's status says of its book: ``reservations`` (see
    :func:`reservations_view`) and ``waiting`` (experiment → why, queued or in a block)."""
    return {"reservations": reservations_view(book), "waiting": {**waiting, **block_waits(book)}}


def samples_view(lab: Any) -> dict[str, Any]:
    """What the worker's status says of the lab's samples: ``at`` (sample → location, as the
    tracker knows) and ``consumed`` (sample → why, used up since this worker started)."""
    tracker = lab.tracker
    return {"at": tracker.snapshot(), "consumed": dict(tracker.consumed)}


class DeviceLeases:
    """This worker's leases on the lab's device slots in Prefect.

    A device's slot is taken when one of this worker's experiments first needs it and kept
    while the next one does: a device handed from one experiment to the next costs no call
    to Prefect. Slots no experiment of this worker holds are given back in the background
    (:meth:`settle`); every lease is renewed on the heartbeat.
    """

    def __init__(
        self,
        slots: DeviceSlots,
        holder: Callable[[], str],
        alone: Callable[[], bool] = lambda: False,
    ):
        self.slots = slots
        self._holder = holder
        self._alone = alone
        self._lock = threading.Lock()
        self.leases: dict[str, frozenset[str]] = {}  # lease → its devices
        self._giving_back = TaskThread("remotelab-leases")

    def leased(self) -> set[str]:
        with self._lock:
            return {d for devices in self.leases.values() for d in devices}

    def cover(self, devices: frozenset[str]) -> bool:
        """Make sure this worker holds the slots of ``devices``: False if another process
        holds one of them (nothing is taken then)."""
        missing = devices - self.leased()
        if not missing:
            return True
        try:
            lease = self.slots.take(self._holder(), missing)
        except Exception as exc:  # Prefect unreachable: the book alone decides meanwhile
            log.warning("could not take Prefect's device slots of %s: %s", sorted(missing), exc)
            return True
        if lease is None and self._orphaned(missing):
            lease = self.slots.take(self._holder(), missing)
        if lease is None:
            return False
        if lease:
            with self._lock:
                self.leases[lease] = frozenset(missing)
        return True

    def _orphaned(self, devices: frozenset[str]) -> bool:
        """Whether the slots of ``devices`` are held by nobody alive — this worker is alone
        on the lab (Prefect restarted and lost the leases, or a dead worker's were never given
        back) — and so were freed; only then may a slot be taken from its holder."""
        try:
            if not self._alone():
                return False
            log.warning(
                "device slots of %s held with no other worker alive on the lab: freeing them",
                sorted(devices),
            )
            self.slots.reset(devices)
        except Exception as exc:
            log.warning("could not free the device slots of %s: %s", sorted(devices), exc)
            return False
        return True

    def settle(self, in_use: set[str]) -> None:
        """Give back, in the background, the leases none of whose devices is ``in_use``."""
        with self._lock:
            idle = [lease for lease, devs in self.leases.items() if not devs & in_use]
            for lease in idle:
                del self.leases[lease]
        if idle:
            self._giving_back.submit(self._give_back, idle)

    def _give_back(self, leases: list[str]) -> None:
        for lease in leases:
            try:
                self.slots.give_back(lease)
            except Exception as exc:  # it expires by itself
                log.warning("could not give back device lease %s: %s", lease, exc)

    def renew(self) -> None:
        """Extend every lease (on the heartbeat)."""
        with self._lock:
            leases = list(self.leases)
        for lease in leases:
            try:
                if not self.slots.renew(lease):
                    log.warning("Prefect let device lease %s expire", lease)
                    with self._lock:
                        self.leases.pop(lease, None)
            except Exception as exc:
                log.warning("could not renew device lease %s: %s", lease, exc)


class Dispatcher:
    """Picks and claims the next experiment a free lane may run (see the module doc)."""

    def __init__(
        self,
        lab: Any,
        registry: Callable[[], Any],
        claimer: Claimer,
        book: Reservations,
        leases: DeviceLeases,
    ):
        self.lab = lab
        self._registry = registry
        self.claimer = claimer
        self.book = book
        self.leases = leases
        self._needs: dict[tuple[str, str], Need] = {}
        self._lock = threading.Lock()
        #: queued experiment id → why it waits (from the last pass)
        self.waiting: dict[str, str] = {}
        #: called with a run whose claim failed half-way (it may be left Pending, ours)
        self.on_claim_lost: Callable[[FlowRun], Any] | None = None

    # -- what an experiment needs ----------------------------------------------------------
    def need(self, run: FlowRun) -> Need:
        """The resources a queued run's plan needs, from the registry's validation.

        A submission that does not validate now (the runner will fail it, saying why)
        needs every device of the lab that is not shared: it starts only on an idle lab.
        """
        params = run.parameters or {}
        key = (str(run.id), json.dumps(params, sort_keys=True, default=str))
        with self._lock:
            known = self._needs.get(key)
        if known is not None:
            return known
        try:
            validated = self._registry().validate(
                str(params.get("plan") or ""),
                dict(params.get("params") or {}),
                lab=self.lab,
                role=str(params.get("role") or "researcher"),
            )
            need = Need(frozenset(validated.reserved), frozenset(validated.shared))
        except Exception:
            whole = frozenset(d for d in self.lab.devices if d not in self.lab.shared_devices)
            return Need(whole, frozenset())  # not cached: it may validate later
        with self._lock:
            if len(self._needs) > 1000:
                self._needs.clear()
            self._needs[key] = need
        return need

    # -- one pass over the queue ------------------------------------------------------------
    def next(self, *, lanes_free: bool, start: bool = True) -> tuple[FlowRun, Booking] | None:
        """Reserve and claim the first queued experiment whose resources are free (only when
        ``lanes_free``); note why the others wait. The claimed run and its booking, or None.
        ``start=False``: the run is left Pending (see :meth:`Claimer.claim_one`)."""
        if self.claimer.is_held():
            self.waiting = {}
            return None
        protect: set[str] = set()
        waiting: dict[str, str] = {}
        for run in self.claimer.candidates():
            exp_id = str(run.id)
            need = self.need(run)
            if not lanes_free:
                waiting[exp_id] = "waiting for a free lane: the lab runs as many as it may"
                continue
            booking = self._reserve(exp_id, need, protect)
            if booking is None:
                waiting[exp_id] = self._why(need, protect)
                protect |= need.reserved
                continue
            try:
                claimed = self.claimer.claim_one(run, start=start)
            except BaseException:  # Prefect lost mid-claim: free it; the run may be ours
                self.book.release(exp_id)
                self.waiting = waiting
                if self.on_claim_lost is not None:
                    self.on_claim_lost(run)
                raise
            if claimed is None:
                self.book.release(exp_id)
                continue
            self.waiting = waiting
            return claimed, booking
        self.waiting = waiting
        # nothing more starts now: slots none of this worker's experiments holds go back
        self.leases.settle(set(self.book.snapshot()))
        return None

    def _reserve(self, exp_id: str, need: Need, protect: set[str]) -> Booking | None:
        if not self.book.try_reserve(exp_id, need.reserved, protect=protect):
            return None
        if not self.leases.cover(need.devices):  # another process of the lab holds one
            self.book.release(exp_id)
            return None
        return Booking(need)

    def release(self, exp_id: str) -> None:
        """Free an experiment's reservations (its devices' slots stay with this worker for
        the next experiment that needs them, or go back after the next pass)."""
        self.book.release(exp_id)

    def _why(self, need: Need, protect: set[str]) -> str:
        reasons = []
        for resource in sorted(need.reserved):
            holder = self.book.holder_of(resource)
            if holder is not None:
                since = self.book.snapshot().get(resource, {}).get("since")
                reasons.append(f"{resource}, held by {holder} since {clock_text(since)}")
            elif resource in protect:
                reasons.append(f"{resource}, kept for an experiment ahead in the queue")
        if not reasons:
            return "waiting for a device another worker of the lab holds"
        return "waiting for " + "; ".join(reasons)


__all__ = [
    "DeviceLeases",
    "Dispatcher",
    "block_waits",
    "booking_view",
    "clock_text",
    "iso",
    "reservations_view",
    "samples_view",
]
