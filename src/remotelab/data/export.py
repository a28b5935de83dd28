"""Export a stored run: its primary data to CSV or JSON, the whole run to HDF5 (NeXus style).

- **CSV**: ``<run>.<stream>.csv`` with ``seq_num``, ``time`` and one column per scalar
  signal; each array-valued signal (a spectrum per event) goes to its own
  ``<run>.<stream>.<key>.csv``, one row per event, headed by the spectral axis when the
  device gives one.
- **JSON**: one file with the run summary, the start and stop documents, the stream's data
  keys and its events (arrays as lists; NaN as null).
- **HDF5**: ``/entry`` (``NXentry``) with the run's metadata, one ``NXdata`` group per
  stream holding every signal as a dataset (spectra as 2-D arrays, events × points),
  device configuration under ``/entry/instrument``, and every document as JSON under
  ``/entry/documents``.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from remotelab.data.store import EventTable, RunStore
from remotelab.errors import ExportError
from remotelab.version import __version__

FORMATS = ("csv", "json", "hdf5")
Format = Literal["csv", "json", "hdf5"]


def export_run(
    store: RunStore,
    uid: str,
    fmt: str,
    out_dir: str | Path = ".",
    *,
    stream: str = "primary",
) -> list[Path]:
    """Write a run in ``fmt`` (csv, json or hdf5) into ``out_dir``; return the files written."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    uid = store.resolve(uid)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the output directory {out}: {_reason(exc)}") from None
    if fmt == "csv":
        return export_csv(store, uid, out, stream=stream)
    if fmt == "json":
        return [export_json(store, uid, out, stream=stream)]
    return [export_hdf5(store, uid, out)]


def _reason(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else str(exc)


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` into an :class:`ExportError` naming it."""
    try:
        yield
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {_reason(exc)}") from None


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path``; an :class:`ExportError` names the path if that fails."""
    path = Path(path)
    with writing(path):
        path.write_bytes(data)
    return path


def _stem(uid: str) -> str:
    return f"run-{uid[:8]}"


def _table(store: RunStore, uid: str, stream: str) -> EventTable:
    streams = store.streams(uid)
    if stream not in streams:
        have = ", ".join(streams) or "none (the run recorded no events)"
        raise ExportError(f"run {uid} has no stream {stream!r} to export; its streams: {have}")
    return store.table(uid, stream)


def export_csv(store: RunStore, uid: str, out_dir: Path, *, stream: str = "primary") -> list[Path]:
    """A stream's scalar signals to one CSV; each array-valued signal to a CSV of its own."""
    table = _table(store, uid, stream)
    base = out_dir / f"{_stem(uid)}.{stream}"
    scalars = table.scalar_columns()
    main = Path(f"{base}.csv")
    with writing(main), main.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["seq_num", "time", *scalars])
        for i in range(len(table)):
            writer.writerow(
                [int(table.seq_num[i]), repr(float(table.time[i]))]
                + [_cell(table.columns[k][i]) for k in scalars]
            )
    paths = [main]
    from remotelab.data.plots import spectral_axis

    for key in table.array_columns():
        data = table.columns[key]
        path = Path(f"{base}.{key}.csv")
        with writing(path), path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            flat = data.reshape(len(data), -1)
            if data.ndim == 2:
                axis, label = spectral_axis(table, key, data.shape[1])
                writer.writerow([f"seq_num \\ {label}", *(repr(float(v)) for v in axis)])
            else:
                writer.writerow(["seq_num", *(f"{key}[{j}]" for j in range(flat.shape[1]))])
            for i in range(len(table)):
                writer.writerow([int(table.seq_num[i]), *(_cell(v) for v in flat[i])])
        paths.append(path)
    return paths


def _cell(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else repr(float(value))
    if isinstance(value, np.integer | np.bool_):
        return str(value.item())
    return str(value)


def jsonable(value: Any) -> Any:
    """``value`` (a bluesky document or part of one) as plain JSON data: numpy arrays and
    scalars become lists and Python numbers, tuples lists, keys strings, NaN and infinities
    ``None`` (JSON has no such numbers)."""
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return jsonable(value.item())
    return value


def run_record(store: RunStore, uid: str, *, stream: str = "primary") -> dict[str, Any]:
    """The JSON export of a run as a Python dict (what :func:`export_json` writes)."""
    uid = store.resolve(uid)
    table = _table(store, uid, stream)
    events = [
        {
            "seq_num": int(table.seq_num[i]),
            "time": float(table.time[i]),
            "data": {k: table.columns[k][i] for k in table.columns},
        }
        for i in range(len(table))
    ]
    return jsonable(
        {
            "format": "remotelab-run/1",
            "run": store.run(uid).to_dict(),
            "start": store.start_doc(uid),
            "stop": store.stop_doc(uid),
            "stream": stream,
            "data_keys": table.data_keys,
            "configuration": table.configuration,
            "events": events,
        }
    )


def export_json(store: RunStore, uid: str, out_dir: Path, *, stream: str = "primary") -> Path:
    """A stream's events, with the run's metadata, to one JSON file."""
    path = out_dir / f"{_stem(uid)}.{stream}.json"
    record = run_record(store, uid, stream=stream)
    with writing(path):
        path.write_text(json.dumps(record, indent=1, allow_nan=False))
    return path


def _iso(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, UTC).isoformat()


def export_hdf5(store: RunStore, uid: str, out_dir: Path) -> Path:
    """The whole run to one HDF5 file in a NeXus-style layout."""
    import h5py

    uid = store.resolve(uid)
    summary = store.run(uid)
    start = store.start_doc(uid)
    path = out_dir / f"{_stem(uid)}.h5"
    with writing(path), h5py.File(path, "w") as f:
        f.attrs.update(
            NX_class="NXroot",
            default="entry",
            file_name=path.name,
            file_time=_iso(datetime.now(UTC).timestamp()),
            creator=f"remotelab {__version__}",
        )
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry["entry_identifier"] = uid
        entry["title"] = str(start.get("plan_name", ""))
        entry["experiment_identifier"] = str(start.get("experiment_id") or "")
        entry["start_time"] = _iso(summary.time)
        entry["end_time"] = _iso(summary.stop_time)
        entry["status"] = summary.status
        entry["program_name"] = "remotelab"
        entry["program_name"].attrs["version"] = __version__
        if summary.submitter:
            user = entry.create_group("user")
            user.attrs["NX_class"] = "NXuser"
            user["name"] = summary.submitter
        if summary.sample_ids:
            sample = entry.create_group("sample")
            sample.attrs["NX_class"] = "NXsample"
            sample["name"] = ", ".join(summary.sample_ids)
        meta = entry.create_group("metadata")
        meta.attrs["NX_class"] = "NXcollection"
        for key, value in start.items():
            _put_meta(meta, key, value)
        if summary.content_hash:
            entry["content_hash"] = summary.content_hash
            entry["content_hash"].attrs["algorithm"] = "sha256"
        instrument = entry.create_group("instrument")
        instrument.attrs["NX_class"] = "NXinstrument"
        streams = store.streams(uid)
        for stream in streams:
            table = store.table(uid, stream)
            _write_stream(entry, instrument, start, stream, table)
        if "primary" in streams:
            entry.attrs["default"] = "primary"
        docs = entry.create_group("documents")
        docs.attrs["NX_class"] = "NXcollection"
        docs.attrs["description"] = "every bluesky document of the run, as JSON, in order"
        names, bodies = [], []
        for name, doc in store.documents(uid):
            names.append(name)
            bodies.append(json.dumps(jsonable(doc), allow_nan=False))
        str_dt = h5py.string_dtype()
        docs.create_dataset("name", data=np.array(names, dtype=object), dtype=str_dt)
        docs.create_dataset("document", data=np.array(bodies, dtype=object), dtype=str_dt)
    return path


def _put_meta(group: Any, key: str, value: Any) -> None:
    if isinstance(value, str | int | float | bool) and not isinstance(value, np.ndarray):
        group[key] = value
    elif isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        group[key] = np.asarray(value)
    else:
        group[key] = json.dumps(jsonable(value), allow_nan=False)
        group[key].attrs["encoding"] = "json"


def _write_stream(
    entry: Any, instrument: Any, start: dict[str, Any], stream: str, table: EventTable
) -> None:
    import h5py

    data = entry.create_group(stream)
    data.attrs["NX_class"] = "NXdata"
    data.create_dataset("seq_num", data=table.seq_num)
    data.create_dataset("time", data=table.time)
    data["time"].attrs["units"] = "s"
    for key, column in table.columns.items():
        info = table.data_keys.get(key, {})
        if column.dtype == object:
            if all(isinstance(v, str) for v in column):
                data.create_dataset(key, data=column, dtype=h5py.string_dtype())
            else:
                data.create_dataset(key, data=json.dumps(jsonable(column.tolist())))
                data[key].attrs["encoding"] = "json"
        else:
            data.create_dataset(key, data=column)
        for attr in ("units", "source", "dtype", "precision"):
            if info.get(attr) is not None:
                data[key].attrs[attr] = info[attr]
    from remotelab.data.plots import motor_fields

    motors = motor_fields(start, table)
    hinted = [f for hint in table.hints.values() for f in hint.get("fields", [])]
    signal = next((k for k in hinted if k in table.columns), None)
    signal = signal or next((k for k in table.scalar_columns() if k not in motors), None)
    if signal:
        data.attrs["signal"] = signal
    data.attrs["axes"] = motors[:1] or ["time"]
    for obj, conf in table.configuration.items():
        if obj in instrument:
            continue
        group = instrument.create_group(obj)
        group.attrs["NX_class"] = "NXcollection"
        for key, value in conf.get("data", {}).items():
            arr = np.asarray(value)
            if arr.dtype.kind in "biuf":
                group.create_dataset(key, data=arr)
            else:
                group[key] = json.dumps(jsonable(value))
            units = conf.get("data_keys", {}).get(key, {}).get("units")
            if units:
                group[key].attrs["units"] = units


__all__ = [
    "FORMATS",
    "export_csv",
    "export_hdf5",
    "export_json",
    "export_run",
    "jsonable",
    "run_record",
    "write_bytes",
    "writing",
]
