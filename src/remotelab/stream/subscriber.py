"""Receive the live stream: documents and worker status, safely decoded.

Two ways in:

- :func:`remote_dispatcher` — bluesky's own ``RemoteDispatcher``, given remotelab's
  document prefix and the safe :func:`deserializer`; subscribe any bluesky callback to it.
- :class:`Subscriber` — a plain zmq subscriber yielding :class:`Message` s (documents and
  status), used by ``remotelab watch``.

Both are CurveZMQ clients of the proxy (:mod:`remotelab.keys.curve`) with this
installation's ``client`` keypair, which the proxy's host must allow (to watch, at least);
they connect only to the proxy whose key their allowlist holds as ``stream-proxy``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import zmq

from remotelab.data.codec import DecodeError, decode
from remotelab.errors import StreamError
from remotelab.keys.curve import CLIENT, CurveKeyError, CurveKeys
from remotelab.stream.publisher import DOC_PREFIX, STATUS_PREFIX

#: decodes a document payload received from the network; pass it to ``RemoteDispatcher``
deserializer = decode


def remote_dispatcher(
    address: str,
    *,
    prefix: bytes = DOC_PREFIX,
    key_name: str = CLIENT,
    keys: CurveKeys | None = None,
    **kwargs: Any,
):
    """A ``bluesky.callbacks.zmq.RemoteDispatcher`` for remotelab's stream.

    Equivalent to ``RemoteDispatcher(address, prefix=b"remotelab", deserializer=decode,
    curve_config=client_curve(address))``.
    """
    from bluesky.callbacks.zmq import RemoteDispatcher

    if "curve_config" not in kwargs:
        kwargs["curve_config"] = client_curve(address, key_name=key_name, keys=keys)
    return RemoteDispatcher(address, prefix=prefix, deserializer=deserializer, **kwargs)


def client_curve(address: Any, *, key_name: str = CLIENT, keys: CurveKeys | None = None) -> Any:
    """The ``curve_config`` a bluesky ``RemoteDispatcher`` or ``Publisher`` needs on the proxy
    at ``address``: a ``ClientCurve`` of keypair ``key_name`` and the proxy's public key."""
    from bluesky.callbacks import zmq as bluesky_zmq

    curve = getattr(bluesky_zmq, "ClientCurve", None)
    if curve is None:
        raise StreamError(
            "the stream is CurveZMQ: this bluesky's zmq callbacks take no curve_config "
            "(upgrade bluesky)"
        )
    keys = keys or CurveKeys()
    try:
        keys.keypair(key_name)
        return curve(keys.secret_path(key_name), keys.proxy_key_path(_endpoint(address)))
    except CurveKeyError as exc:
        raise StreamError(str(exc)) from None


def _endpoint(address: Any) -> str:
    """A bluesky address (``"host:port"``, a tuple…) as a zmq endpoint."""
    if isinstance(address, str) and "://" in address:
        return address
    if isinstance(address, tuple):
        return "tcp://" + ":".join(str(part) for part in address[-2:])
    return f"tcp://{address}"


@dataclass(frozen=True)
class Message:
    """One message from the stream: a document (``kind="document"``) or a worker status."""

    kind: str
    name: str
    doc: dict[str, Any]


class Subscriber:
    """A zmq SUB socket on the proxy's out address, for documents and/or status; a CURVE
    client with keypair ``key_name`` of ``keys`` (default: the keys directory's)."""

    def __init__(
        self,
        address: str,
        *,
        documents: bool = True,
        status: bool = True,
        doc_prefix: bytes = DOC_PREFIX,
        status_prefix: bytes = STATUS_PREFIX,
        key_name: str = CLIENT,
        keys: CurveKeys | None = None,
    ):
        self.address = address
        self._doc_prefix, self._status_prefix = doc_prefix, status_prefix
        keys = keys or CurveKeys()
        try:
            keypair = keys.keypair(key_name)
            server_key = keys.proxy_key(address)
        except CurveKeyError as exc:
            raise StreamError(f"cannot subscribe to the stream at {address}: {exc}") from None
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVHWM, 100_000)
        keypair.client(self._socket, server_key)
        try:
            self._socket.connect(address)
        except zmq.ZMQError as exc:
            self._context.destroy(linger=0)
            raise StreamError(f"cannot subscribe to the stream at {address}: {exc}") from None
        if documents:
            self._socket.setsockopt(zmq.SUBSCRIBE, doc_prefix + b" ")
        if status:
            self._socket.setsockopt(zmq.SUBSCRIBE, status_prefix + b" ")
        self.dropped = 0

    def receive(self, timeout: float | None = None) -> Message | None:
        """The next message, or None if none arrives within ``timeout`` seconds."""
        while True:
            ms = None if timeout is None else int(timeout * 1000)
            if not self._socket.poll(ms, zmq.POLLIN):
                return None
            raw = self._socket.recv()
            message = self._parse(raw)
            if message is not None:
                return message

    def _parse(self, raw: bytes) -> Message | None:
        try:
            prefix, name, payload = raw.split(b" ", 2)
            doc = decode(payload)
            if not isinstance(doc, dict):
                raise DecodeError("payload is not a mapping")
        except (ValueError, DecodeError):
            self.dropped += 1
            return None
        kind = "status" if prefix == self._status_prefix else "document"
        return Message(kind, name.decode(errors="replace"), doc)

    def __iter__(self) -> Iterator[Message]:
        while True:
            message = self.receive()
            if message is not None:
                yield message

    def close(self) -> None:
        self._socket.close()
        self._context.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Message", "Subscriber", "client_curve", "deserializer", "remote_dispatcher"]
