"""Live streaming of bluesky documents and worker status over zmq (bluesky's wire format)."""

from remotelab.stream.proxy import StreamProxy
from remotelab.stream.publisher import DOC_PREFIX, STATUS_PREFIX, StreamPublisher
from remotelab.stream.subscriber import (
    Message,
    Subscriber,
    client_curve,
    deserializer,
    remote_dispatcher,
)

__all__ = [
    "DOC_PREFIX",
    "STATUS_PREFIX",
    "Message",
    "StreamProxy",
    "StreamPublisher",
    "Subscriber",
    "client_curve",
    "deserializer",
    "remote_dispatcher",
]
