"""Where documents go besides the run store: a Tiled server, or several sinks at once.

:class:`DocumentSink` is what every sink is (a bluesky callback that can be closed);
:class:`TiledSink` sends documents to Tiled through bluesky's ``TiledWriter``;
:class:`Fanout` hands each document to several sinks in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from remotelab.errors import StoreError


@runtime_checkable
class DocumentSink(Protocol):
    """Where documents go: a bluesky callback that can be closed."""

    def __call__(self, name: str, doc: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class TiledSink:
    """Send documents to a Tiled server through bluesky's ``TiledWriter``.

    Needs the optional ``tiled`` extra (``pip install 'remotelab[tiled]'``) and a running
    Tiled server; remotelab's own :class:`~remotelab.data.store.RunStore` needs neither.
    """

    def __init__(self, uri: str, *, api_key: str | None = None, batch_size: int = 1):
        try:
            from bluesky.callbacks.tiled_writer import TiledWriter
        except ImportError as exc:
            raise StoreError(
                "sending documents to Tiled needs the 'tiled' package: "
                "pip install 'remotelab[tiled]'"
            ) from exc
        self.uri = uri
        self._writer = TiledWriter.from_uri(uri, api_key=api_key, batch_size=batch_size)

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        self._writer(name, doc)

    def close(self) -> None:
        """Nothing to release: TiledWriter writes each run as it goes."""


class Fanout:
    """One callback that hands each document to several sinks, in order."""

    def __init__(self, *sinks: Callable[[str, dict[str, Any]], Any]):
        self.sinks = list(sinks)

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink(name, doc)

    def close(self) -> None:
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                close()


__all__ = ["DocumentSink", "Fanout", "TiledSink"]
