"""The control channel between the queue (gateway side) and a lab worker, over pyzmq.

Prefect has no channel that reaches a RunEngine's pause, resume, stop or abort, nor one that
wakes a worker the moment work arrives. Each worker binds a zmq REP socket and announces its
endpoint (:mod:`remotelab.queue.announcement`), so the queue can reach every live worker of a
lab. A request is one command and the answer one reply, both JSON, as
:mod:`remotelab.queue.commands` defines them.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Sequence

import zmq

from remotelab.errors import WorkerUnavailable
from remotelab.queue.commands import BadCommand, Command, Reply, parse_command


def request(endpoint: str, command: Command, timeout: float = 5.0) -> Reply:
    """Send one command to a worker and return its reply.

    Raises :class:`WorkerUnavailable` if the worker does not answer within ``timeout`` s.
    """
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
    sock.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
    try:
        sock.connect(endpoint)
        sock.send(command.model_dump_json(exclude_defaults=False).encode())
        return Reply.model_validate_json(sock.recv())
    except zmq.Again:
        raise WorkerUnavailable(
            f"the worker at {endpoint} did not answer within {timeout} s"
        ) from None
    finally:
        sock.close()


def request_many(
    endpoints: Sequence[str], command: Command, timeout: float = 1.0
) -> dict[str, Reply]:
    """Send one command to several workers at once; the replies of those that answered
    within ``timeout`` s (all wait together: a silent worker costs the others nothing)."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    payload = command.model_dump_json(exclude_defaults=False).encode()
    sockets: dict[zmq.Socket[bytes], str] = {}
    poller = zmq.Poller()
    replies: dict[str, Reply] = {}
    try:
        for endpoint in dict.fromkeys(endpoints):
            sock = ctx.socket(zmq.REQ)
            sock.setsockopt(zmq.LINGER, 0)
            sockets[sock] = endpoint
            try:
                sock.connect(endpoint)
                sock.send(payload, zmq.NOBLOCK)
            except zmq.ZMQError:
                continue
            poller.register(sock, zmq.POLLIN)
        waiting = len(poller.sockets)
        deadline = time.monotonic() + timeout
        while waiting and (left := deadline - time.monotonic()) > 0:
            for sock, _event in poller.poll(max(1, int(left * 1000))):
                poller.unregister(sock)
                waiting -= 1
                try:
                    replies[sockets[sock]] = Reply.model_validate_json(sock.recv())
                except ValueError:
                    continue
        return replies
    finally:
        for sock in sockets:
            sock.close()


def answer(raw: bytes, handler: Callable[[Command], Reply]) -> Reply:
    """The reply to one raw request: the handler's, or a refusal saying what was wrong."""
    try:
        command = parse_command(json.loads(raw))
    except (BadCommand, ValueError) as exc:
        return Reply.refused(str(exc) if isinstance(exc, BadCommand) else f"not JSON: {exc}")
    try:
        return handler(command)
    except Exception as exc:
        return Reply.refused(f"{type(exc).__name__}: {exc}")


class ControlServer:
    """A REP socket served on its own thread; ``handler(command) -> reply``."""

    def __init__(self, handler: Callable[[Command], Reply], bind: str = "tcp://127.0.0.1:0"):
        self.handler = handler
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
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
            reply = answer(self._sock.recv(), self.handler)
            self._sock.send(reply.model_dump_json(exclude_none=True).encode())
        self._sock.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)


__all__ = ["ControlServer", "answer", "request", "request_many"]
