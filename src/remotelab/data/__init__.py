"""The run store, export (CSV, JSON, HDF5/NeXus), plots, integrity checks, RunEngine wiring."""

from remotelab.data.codec import DecodeError, decode, encode
from remotelab.data.export import FORMATS, export_run, run_record
from remotelab.data.store import (
    DocumentSink,
    EventTable,
    Fanout,
    RunStore,
    RunSummary,
    TiledSink,
    Verification,
    content_hash,
)
from remotelab.data.wiring import Attachment, attach

__all__ = [
    "FORMATS",
    "Attachment",
    "DecodeError",
    "DocumentSink",
    "EventTable",
    "Fanout",
    "RunStore",
    "RunSummary",
    "TiledSink",
    "Verification",
    "attach",
    "content_hash",
    "decode",
    "encode",
    "export_run",
    "run_record",
]
