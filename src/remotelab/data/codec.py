"""A safe binary encoding of bluesky documents: msgpack, with numpy arrays as an extension.

Used for the run store and on the wire of the live stream. Decoding runs no code and builds
no objects but plain Python values and numeric, boolean or text numpy arrays, so it is safe
on data received from the network (unlike pickle).
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

from remotelab.errors import RemotelabError

#: msgpack extension type code of a numpy array
NDARRAY_EXT = 42
#: numpy dtype kinds an array may have on the wire: bool, int, uint, float, complex, text, bytes
SAFE_KINDS = frozenset("biufcUS")


class DecodeError(RemotelabError, ValueError):
    """Bytes that are not a valid remotelab document encoding."""


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in SAFE_KINDS:
            if obj.dtype.kind == "O":
                return obj.tolist()
            raise TypeError(f"cannot encode a numpy array of dtype {obj.dtype}")
        arr = np.ascontiguousarray(obj)
        header = msgpack.packb([arr.dtype.str, list(arr.shape)])
        return msgpack.ExtType(NDARRAY_EXT, header + arr.tobytes())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"cannot encode a value of type {type(obj).__name__}: {obj!r:.80}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code != NDARRAY_EXT:
        raise DecodeError(f"unknown msgpack extension type {code}")
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(data))
    unpacker.feed(data)
    try:
        dtype_str, shape = unpacker.unpack()
    except Exception as exc:
        raise DecodeError(f"malformed array header: {exc}") from None
    try:
        dtype = np.dtype(dtype_str)
    except TypeError as exc:
        raise DecodeError(f"bad array dtype {dtype_str!r}") from exc
    if dtype.kind not in SAFE_KINDS or dtype.fields is not None:
        raise DecodeError(f"array dtype {dtype_str!r} is not allowed")
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise DecodeError(f"bad array shape {shape!r}")
    payload = data[unpacker.tell() :]
    if len(payload) != math.prod(shape) * dtype.itemsize:
        raise DecodeError("array payload does not match its dtype and shape")
    return np.frombuffer(payload, dtype=dtype).reshape(shape).copy()


def encode(obj: Any) -> bytes:
    """Encode a document (or any JSON-like value with numpy arrays) to bytes."""
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def decode(data: bytes) -> Any:
    """Decode bytes made by :func:`encode`; raise :class:`DecodeError` on anything else."""
    try:
        return msgpack.unpackb(data, raw=False, ext_hook=_ext_hook, strict_map_key=False)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"not a remotelab document encoding: {exc}") from None


__all__ = ["NDARRAY_EXT", "DecodeError", "decode", "encode"]
