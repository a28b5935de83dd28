"""A lab's devices as Prefect global concurrency limits: one slot per device, taken by lease.

The worker's reservation book (:mod:`remotelab.lab.reservations`) decides, in memory and at
once, which experiment drives which device. Each reservation is mirrored here: every device is
a Prefect global concurrency limit of one slot (``remotelab-<lab>-<device>``), and a running
experiment holds a lease on the slots of its devices. So the reservations are visible in
Prefect's UI, shared by every process of the lab (a second worker is refused a device the
first holds), and freed by Prefect itself when a lease is not renewed (its worker was killed).

:class:`PrefectDeviceSlots` talks to Prefect; :class:`MemoryDeviceSlots` follows the same
rules in memory (for :class:`~remotelab.queue.fake.FakePrefectLab`).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterable
from typing import Protocol
from uuid import UUID, uuid4

from httpx import HTTPStatusError
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.exceptions import ObjectNotFound

#: seconds a lease lasts unless renewed (the worker renews its leases on every heartbeat)
LEASE_SECONDS = 60.0  # Prefect's shortest lease


def slot_name(lab: str, device: str) -> str:
    """The Prefect global concurrency limit of ``device`` in ``lab``."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"remotelab-{lab}-{device}")


class DeviceSlots(Protocol):
    """A lab's device slots in Prefect (see :class:`PrefectDeviceSlots`)."""

    def ensure(self, devices: Iterable[str]) -> None: ...

    def take(self, holder: str, devices: Iterable[str]) -> str | None: ...

    def renew(self, lease: str) -> bool: ...

    def give_back(self, lease: str) -> None: ...

    def reset(self, devices: Iterable[str]) -> None: ...


class PrefectDeviceSlots:
    """Device slots of lab ``lab`` on Prefect, through ``client()`` (this thread's client)."""

    def __init__(self, lab: str, client: Callable[[], SyncPrefectClient]):
        self.lab = lab
        self._client = client
        self._known: set[str] = set()

    def ensure(self, devices: Iterable[str]) -> None:
        """Create each device's limit (one slot) if it is missing."""
        for device in devices:
            if device not in self._known:
                self._client().upsert_global_concurrency_limit_by_name(
                    slot_name(self.lab, device), 1
                )
                self._known.add(device)

    def take(self, holder: str, devices: Iterable[str]) -> str | None:
        """Take the slots of ``devices`` for ``holder`` (the id of the lab's deployment: its
        worker holds them), all or none, without waiting: the lease's id, or None if
        another process holds one of them."""
        names = [slot_name(self.lab, d) for d in sorted(set(devices))]
        if not names:
            return ""
        self.ensure(devices)
        try:
            response = self._client().increment_concurrency_slots_with_lease(
                names,
                1,
                "concurrency",
                LEASE_SECONDS,
                holder=ConcurrencyLeaseHolder(type="deployment", id=UUID(holder)),
            )
        except HTTPStatusError as exc:
            if exc.response.status_code == 423:  # locked: some slot is taken
                return None
            raise
        return str(response.json()["lease_id"])

    def renew(self, lease: str) -> bool:
        """Extend a lease; False if Prefect no longer has it (it expired)."""
        if not lease:
            return True
        try:
            self._client().renew_concurrency_lease(UUID(lease), LEASE_SECONDS)
        except HTTPStatusError as exc:
            if exc.response.status_code in (404, 410):
                return False
            raise
        return True

    def give_back(self, lease: str) -> None:
        """Release a lease's slots (a lease Prefect already revoked is fine)."""
        if not lease:
            return
        try:
            self._client().release_concurrency_slots_with_lease(UUID(lease))
        except HTTPStatusError as exc:
            if exc.response.status_code not in (404, 410):
                raise

    def reset(self, devices: Iterable[str]) -> None:
        """Free every slot of ``devices``, whoever holds it: each limit is deleted and made
        afresh, so a lease nobody knows of any more (its worker was killed before it said it
        had it) frees nothing when Prefect expires it later. Only for a worker alone on its
        lab."""
        for device in devices:
            with contextlib.suppress(ObjectNotFound):
                self._client().delete_global_concurrency_limit_by_name(slot_name(self.lab, device))
            self._known.discard(device)


class MemoryDeviceSlots:
    """Device slots in memory, with Prefect's all-or-none rule (leases never expire here)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.leases: dict[str, tuple[str, frozenset[str]]] = {}

    def ensure(self, devices: Iterable[str]) -> None:
        return None

    def holders(self) -> dict[str, str]:
        """device → the experiment holding its slot."""
        with self._lock:
            return {d: h for h, devices in self.leases.values() for d in devices}

    def take(self, holder: str, devices: Iterable[str]) -> str | None:
        wanted = frozenset(devices)
        if not wanted:
            return ""
        with self._lock:
            taken = {d for _h, held in self.leases.values() for d in held}
            if wanted & taken:
                return None
            lease = str(uuid4())
            self.leases[lease] = (holder, wanted)
            return lease

    def renew(self, lease: str) -> bool:
        with self._lock:
            return not lease or lease in self.leases

    def give_back(self, lease: str) -> None:
        with self._lock:
            self.leases.pop(lease, None)

    def reset(self, devices: Iterable[str]) -> None:
        freed = set(devices)
        with self._lock:
            for lease, (_holder, held) in list(self.leases.items()):
                if held & freed:
                    del self.leases[lease]


__all__ = [
    "LEASE_SECONDS",
    "DeviceSlots",
    "MemoryDeviceSlots",
    "PrefectDeviceSlots",
    "slot_name",
]
