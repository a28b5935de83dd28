"""A stub lab worker for tests of several experiments at once: its control channel (a real
:class:`~remotelab.queue.control.ControlServer`) says what it runs, holds and why experiments
wait, and records the commands it gets."""

from __future__ import annotations

import os
import socket
from typing import Any

from prefect.states import Running

from remotelab.queue import ExperimentQueue
from remotelab.queue.announcement import WorkerAnnouncement, now_iso
from remotelab.queue.commands import Abort, Command, Reply, Status
from remotelab.queue.control import ControlServer
from remotelab.queue.fake import FakePrefectLab

MEASURE = {"detectors": ["thermometer"], "num": 2}


class StubWorker:
    """A worker's control channel that says it runs ``running`` and records what it gets;
    it refuses a lab-wide command the way a worker running several does."""

    def __init__(self, fake: FakePrefectLab, worker_id: str, *, new: bool = True):
        self.running: list[dict[str, Any]] = []
        self.reservations: dict[str, Any] = {}
        self.waiting: dict[str, str] = {}
        self.got: list[Command] = []
        self.new, self.fake, self.id = new, fake, worker_id
        self.server = ControlServer(self.handle).start()

    def handle(self, command: Command) -> Reply:
        ids = [r["id"] for r in self.running]
        if isinstance(command, Status):
            if not self.new:  # a worker from before several ran: ``current`` only
                return Reply(ok=True, info={"current": ids[0] if ids else None})
            return Reply(
                ok=True,
                info={
                    "current": ids[0] if ids else None,
                    "running": self.running,
                    "reservations": self.reservations,
                    "waiting": self.waiting,
                    "concurrency": 3,
                },
            )
        self.got.append(command)
        meant = getattr(command, "experiment", None)
        if meant is None and len(ids) > 1 and not isinstance(command, Abort):
            return Reply(
                ok=False, error=f"several experiments run: {', '.join(ids)}", info={"running": ids}
            )
        if meant is not None and meant not in ids:
            return Reply(ok=False, error=f"{meant} does not run here")
        return Reply(ok=True, note=f"{type(command).__name__} {meant}")

    def announce(self) -> None:
        self.fake.announce(
            WorkerAnnouncement(
                id=self.id,
                lab=self.fake.name,
                pid=os.getpid(),
                host=socket.gethostname(),
                control=self.server.endpoint,
                control_key=self.server.address.key,
                heartbeat=now_iso(),
                current=self.running[0]["id"] if self.running else None,
                running=self.running if self.new else [],
            ),
            create=True,
        )

    def close(self) -> None:
        self.server.close()


def start(q: ExperimentQueue, fake: FakePrefectLab, worker: StubWorker, n: int) -> list[str]:
    """Submit ``n`` experiments and make them run on ``worker``."""
    ids = []
    for _ in range(n):
        exp = q.submit("measure", MEASURE, submitter="ada")
        fake.set_state(exp.id, Running(message="running"), force=True)
        ids.append(exp.id)
        worker.running.append({"id": exp.id, "plan": "measure", "devices": ["thermometer"]})
    worker.announce()
    return ids


def stub(fake, stubs: list[StubWorker], worker_id="w1", **kw) -> StubWorker:
    made = StubWorker(fake, worker_id, **kw)
    stubs.append(made)
    return made
