"""A worker's presence: its announcement in Prefect, its heartbeat and its peers.

The announcement (:class:`~remotelab.queue.announcement.WorkerAnnouncement`) tells the queue
where the worker's control channel is and what it runs; it is rewritten on every heartbeat,
which also tells Prefect's work pool the worker is there.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from remotelab.queue.announcement import (
    HEARTBEAT_INTERVAL,
    AnnouncementMissing,
    LostRecord,
    WorkerAnnouncement,
    now_iso,
)
from remotelab.queue.prefect_lab import LabOnPrefect

log = logging.getLogger("remotelab.worker")

#: seconds between a change that calls for an announcement and its write
ANNOUNCE_DELAY = 0.1


class Presence:
    """Announces worker ``worker_id`` of a lab; ``describe()`` fills in what it does now."""

    def __init__(
        self,
        prefect: LabOnPrefect,
        worker_id: str,
        describe: Callable[[], dict[str, object]],
    ):
        self.prefect = prefect
        self.worker_id = worker_id
        self.describe = describe
        self._soon = threading.Event()
        # one write at a time, each of what is true when it is written: a heartbeat's older
        # view never lands after a newer one
        self._writing = threading.Lock()
        self._pusher: threading.Thread | None = None

    def announcement(self) -> WorkerAnnouncement:
        """What the worker says of itself now."""
        return WorkerAnnouncement.model_validate(
            {
                "id": self.worker_id,
                "lab": self.prefect.name,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "heartbeat": now_iso(),
                **self.describe(),
            }
        )

    def announce(self, *, create: bool = False) -> None:
        """Write the announcement (``create``: afresh, at start)."""
        with self._writing:
            self.prefect.announce(self.announcement(), create=create)

    def announce_quietly(self) -> None:
        """Announce; a failure is only logged (the next heartbeat tries again)."""
        try:
            self.announce()
        except Exception as exc:
            log.warning("could not announce worker %s: %s", self.worker_id, exc)

    def announce_soon(self) -> None:
        """Announce in the background, soon (what it runs, or its leases, changed); several
        calls close together make one write."""
        if self._pusher is None:
            self._pusher = threading.Thread(
                target=self._push, name="remotelab-announce", daemon=True
            )
            self._pusher.start()
        self._soon.set()

    def _push(self) -> None:
        while True:
            self._soon.wait()
            # a moment later, so the claim or state write that called for it goes first and
            # the changes close together make one write
            time.sleep(ANNOUNCE_DELAY)
            self._soon.clear()
            self.announce_quietly()

    def arrive(self) -> LostRecord | None:
        """Announce afresh (at start, or back after being found lost); a record of this
        worker as lost is read, said in the log and removed (its experiments stay as the
        marker left them). That record, if any."""
        record = self.prefect.lost(self.worker_id)
        if record is not None:
            log.warning(
                "worker %s was marked lost by %s at %s (no heartbeat for %.0f s); experiments "
                "it had marked crashed: %s",
                self.worker_id,
                record.by,
                record.at,
                record.silent_for,
                ", ".join(record.experiments) or "none",
            )
            self.prefect.forget_lost(self.worker_id)
        self.announce(create=True)
        return record

    def beat(self) -> None:
        """One heartbeat: the announcement and Prefect's work pool worker heartbeat. An
        announcement someone removed (they found this worker lost while it could not
        heartbeat) is made again (:meth:`arrive`)."""
        try:
            self.announce()
        except AnnouncementMissing:
            self.arrive()
        self.prefect.pool_heartbeat(f"remotelab {self.worker_id}", HEARTBEAT_INTERVAL)

    def peers(self) -> list[WorkerAnnouncement]:
        """The other live workers of the lab."""
        return [w for w in self.prefect.workers() if w.id != self.worker_id]

    def withdraw(self) -> None:
        """Remove the announcement (the worker stops)."""
        self.prefect.withdraw(self.worker_id)


__all__ = ["Presence"]
