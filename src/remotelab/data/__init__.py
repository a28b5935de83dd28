"""The run store, export (CSV, JSON, HDF5/NeXus), plots and integrity checks."""

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

__all__ = [
    "FORMATS",
    "DecodeError",
    "DocumentSink",
    "EventTable",
    "Fanout",
    "RunStore",
    "RunSummary",
    "TiledSink",
    "Verification",
    "content_hash",
    "decode",
    "encode",
    "export_run",
    "run_record",
]
