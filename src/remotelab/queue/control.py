"""The control channel between the queue (gateway side) and a lab worker, over pyzmq.

Prefect has no channel that reaches a RunEngine's pause, resume, stop or abort, nor one that
wakes a worker the moment work arrives. Each worker binds a zmq REP socket and announces it in
a Prefect variable (``remotelab_worker_<lab>_<id>``: endpoint, pid, host, heartbeat), so the
queue can find every live worker of a lab. A request is one JSON object ``{"cmd": ...}``; the
answer is ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.

Commands: ``wake`` (new work or a release), ``status``, ``pause`` (``defer``: at the next
checkpoint), ``resume``, ``stop``, ``abort``, ``cancel`` (``experiment``), ``answer``
(``question``, ``value``), ``hold``, ``release``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import zmq

from remotelab.errors import WorkerUnavailable

#: seconds between a worker's heartbeats; a worker silent for 3 of them is taken for dead
HEARTBEAT_INTERVAL = 2.0
VARIABLE_PREFIX = "remotelab_worker_"


def variable_name(lab: str, worker_id: str) -> str:
    """The Prefect variable a worker announces itself in."""
    return _slug(f"{VARIABLE_PREFIX}{lab}_{worker_id}")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", text.lower())


def lab_prefix(lab: str) -> str:
    return _slug(f"{VARIABLE_PREFIX}{lab}_")


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_is_alive(info: dict[str, Any], *, stale_after: float | None = None) -> bool:
    """Whether the worker an announcement describes still runs.

    On this host the pid decides; elsewhere the heartbeat must be younger than ``stale_after``
    (3 heartbeat intervals by default).
    """
    if info.get("stopped"):
        return False
    if info.get("host") == socket.gethostname() and info.get("pid"):
        return pid_alive(int(info["pid"]))
    try:
        beat = datetime.fromisoformat(str(info.get("heartbeat")))
    except ValueError:
        return False
    limit = stale_after if stale_after is not None else 3 * HEARTBEAT_INTERVAL
    return (datetime.now(UTC) - beat).total_seconds() < limit


def request(endpoint: str, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one control request to a worker and return its answer.

    Raises :class:`WorkerUnavailable` if the worker does not answer within ``timeout`` s.
    """
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
    sock.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
    try:
        sock.connect(endpoint)
        sock.send(json.dumps(message).encode())
        return json.loads(sock.recv())
    except zmq.Again:
        raise WorkerUnavailable(
            f"the worker at {endpoint} did not answer within {timeout} s"
        ) from None
    finally:
        sock.close()


class ControlServer:
    """A REP socket served on its own thread; ``handler(message) -> answer``."""

    def __init__(
        self, handler: Callable[[dict[str, Any]], dict[str, Any]], bind: str = "tcp://127.0.0.1:0"
    ):
        self.handler = handler
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 0)
        if bind.endswith(":0"):
            base = bind.rsplit(":", 1)[0]
            port = self._sock.bind_to_random_port(base)
            self.endpoint = f"{base}:{port}"
        else:
            self._sock.bind(bind)
            self.endpoint = bind
        if "0.0.0.0" in self.endpoint:
            self.endpoint = self.endpoint.replace("0.0.0.0", socket.gethostname())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="remotelab-control", daemon=True)

    def start(self) -> ControlServer:
        self._thread.start()
        return self

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        while not self._stop.is_set():
            if not dict(poller.poll(100)):
                continue
            raw = self._sock.recv()
            try:
                answer = self.handler(json.loads(raw))
            except Exception as exc:
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            self._sock.send(json.dumps(answer, default=str).encode())
        self._sock.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)


__all__ = [
    "HEARTBEAT_INTERVAL",
    "ControlServer",
    "lab_prefix",
    "now_iso",
    "pid_alive",
    "request",
    "variable_name",
    "worker_is_alive",
]
