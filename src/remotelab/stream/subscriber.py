"""Receive the live stream: documents and worker status, safely decoded.

Two ways in:

- :func:`remote_dispatcher` — bluesky's own ``RemoteDispatcher``, given remotelab's
  document prefix and the safe :func:`deserializer`; subscribe any bluesky callback to it.
- :class:`Subscriber` — a plain zmq subscriber yielding :class:`Message` s (documents and
  status), used by ``remotelab watch``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import zmq

from remotelab.data.codec import DecodeError, decode
from remotelab.errors import StreamError
from remotelab.stream.publisher import DOC_PREFIX, STATUS_PREFIX

#: decodes a document payload received from the network; pass it to ``RemoteDispatcher``
deserializer = decode


def remote_dispatcher(address: str, *, prefix: bytes = DOC_PREFIX, **kwargs: Any):
    """A ``bluesky.callbacks.zmq.RemoteDispatcher`` for remotelab's stream.

    Equivalent to ``RemoteDispatcher(address, prefix=b"remotelab", deserializer=decode)``.
    """
    from bluesky.callbacks.zmq import RemoteDispatcher

    return RemoteDispatcher(address, prefix=prefix, deserializer=deserializer, **kwargs)


@dataclass(frozen=True)
class Message:
    """One message from the stream: a document (``kind="document"``) or a worker status."""

    kind: str
    name: str
    doc: dict[str, Any]


class Subscriber:
    """A zmq SUB socket on the proxy's out address, for documents and/or status."""

    def __init__(
        self,
        address: str,
        *,
        documents: bool = True,
        status: bool = True,
        doc_prefix: bytes = DOC_PREFIX,
        status_prefix: bytes = STATUS_PREFIX,
    ):
        self.address = address
        self._doc_prefix, self._status_prefix = doc_prefix, status_prefix
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVHWM, 100_000)
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


__all__ = ["Message", "Subscriber", "deserializer", "remote_dispatcher"]
