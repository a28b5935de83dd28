"""The control channel between the queue (gateway side) and a lab worker, over pyzmq.

Prefect has no channel that reaches a RunEngine's pause, resume, stop or abort, nor one that
wakes a worker the moment work arrives. Each worker binds a zmq REP socket and announces its
endpoint (:mod:`remotelab.queue.announcement`), so the queue can reach every live worker of a
lab. A request is one command and the answer one reply, both JSON, as
:mod:`remotelab.queue.commands` defines them.

The channel is CurveZMQ (:mod:`remotelab.keys.curve`): the worker's socket is a CURVE server
that answers only clients whose key is allowed, and a client talks only to a worker whose
announced control key it allows, with this installation's ``client`` keypair.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import zmq

from remotelab.errors import WorkerUnavailable
from remotelab.keys.curve import CLIENT, CONTROL, CurveKeyError, CurveKeys, Gatekeeper, parse_key
from remotelab.queue.commands import BadCommand, Command, Reply, parse_command

log = logging.getLogger(__name__)


class ControlAddress(NamedTuple):
    """Where a worker's control channel is: its zmq endpoint and its CURVE public key (Z85)."""

    endpoint: str
    key: str


def _trusted(address: ControlAddress, keys: CurveKeys) -> bytes:
    """The worker's control key, if this installation allows it; else WorkerUnavailable."""
    if not address.key:
        raise WorkerUnavailable(f"the worker at {address.endpoint} announces no control key")
    try:
        key = parse_key(address.key)
    except CurveKeyError:
        raise WorkerUnavailable(f"the worker at {address.endpoint} announces a bad key") from None
    if not keys.allows(key):
        raise WorkerUnavailable(
            f"the worker at {address.endpoint} has a control key not allowed here "
            f"({address.key}): if the worker is yours, `remotelab keys allow` it"
        )
    return key


def _client(
    ctx: zmq.Context[zmq.Socket[bytes]], server_key: bytes, keys: CurveKeys
) -> zmq.Socket[bytes]:
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    keys.keypair(CLIENT).client(sock, server_key)
    return sock


def request(
    address: ControlAddress,
    command: Command,
    timeout: float = 5.0,
    *,
    keys: CurveKeys | None = None,
) -> Reply:
    """Send one command to a worker and return its reply.

    Raises :class:`WorkerUnavailable` if the worker does not answer within ``timeout`` s, or
    if its control key is not allowed here (``keys``: default, the keys directory's).
    """
    endpoint = address.endpoint
    keys = keys or CurveKeys()
    server_key = _trusted(address, keys)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = _client(ctx, server_key, keys)
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
    addresses: Sequence[ControlAddress],
    command: Command,
    timeout: float = 1.0,
    *,
    keys: CurveKeys | None = None,
) -> dict[str, Reply]:
    """Send one command to several workers at once; the replies of those that answered
    within ``timeout`` s (all wait together: a silent worker costs the others nothing), by
    endpoint. A worker whose control key is not allowed here is not asked."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    keys = keys or CurveKeys()
    payload = command.model_dump_json(exclude_defaults=False).encode()
    sockets: dict[zmq.Socket[bytes], str] = {}
    poller = zmq.Poller()
    replies: dict[str, Reply] = {}
    try:
        for endpoint, key in dict.fromkeys(addresses):
            try:
                server_key = _trusted(ControlAddress(endpoint, key), keys)
            except WorkerUnavailable as exc:
                log.debug("not asked: %s", exc)
                continue
            sock = _client(ctx, server_key, keys)
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
    """A REP socket served on its own thread; ``handler(command) -> reply``.

    A CURVE server with keypair ``name`` of ``keys`` (default: the keys directory's), on a
    zmq context of its own whose :class:`~remotelab.keys.curve.Gatekeeper` admits the
    clients allowed there; :attr:`address` is what clients need to reach it.
    """

    def __init__(
        self,
        handler: Callable[[Command], Reply],
        bind: str = "tcp://127.0.0.1:0",
        *,
        name: str = "worker",
        keys: CurveKeys | None = None,
    ):
        self.handler = handler
        self.keys = keys or CurveKeys()
        self.keypair = self.keys.keypair(name)
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._gate = Gatekeeper(self._ctx, self.keys)
        self._sock = self._ctx.socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 0)
        self.keypair.serve(self._sock, CONTROL)
        try:
            self._bind(bind)
        except zmq.ZMQError:
            self._shut()
            raise
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="remotelab-control", daemon=True)

    @property
    def address(self) -> ControlAddress:
        """Its endpoint and public key, as a worker announces them."""
        return ControlAddress(self.endpoint, self.keypair.public.decode())

    def _bind(self, bind: str) -> None:
        if bind.endswith(":0"):
            base = bind.rsplit(":", 1)[0]
            port = self._sock.bind_to_random_port(base)
            self.endpoint = f"{base}:{port}"
        else:
            self._sock.bind(bind)
            self.endpoint = bind
        if "0.0.0.0" in self.endpoint:
            self.endpoint = self.endpoint.replace("0.0.0.0", socket.gethostname())

    def start(self) -> ControlServer:
        self._thread.start()
        return self

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if not dict(poller.poll(100)):
                    continue
                reply = answer(self._sock.recv(), self.handler)
                self._sock.send(reply.model_dump_json(exclude_none=True).encode())
        finally:
            self._shut()

    def _shut(self) -> None:
        self._sock.close()
        self._gate.stop()
        self._ctx.term()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        elif self._thread.ident is None and not self._ctx.closed:  # never started
            self._shut()


__all__ = ["ControlAddress", "ControlServer", "answer", "request", "request_many"]
