"""The document encoding: arrays round-trip; what is not plain data is refused both ways."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from remotelab.data.codec import NDARRAY_EXT, DecodeError, decode, encode


def test_arrays_and_scalars_round_trip():
    doc = {
        "spectrum": np.linspace(0, 1, 201),
        "image": np.arange(12, dtype="<u2").reshape(3, 4),
        "flags": np.array([True, False]),
        "labels": np.array(["a", "bc"]),
        "scalar": np.float32(1.5),
        "count": np.int64(7),
        "nested": {"list": [1, 2.5, "x", None]},
    }
    back = decode(encode(doc))
    for key in ("spectrum", "image", "flags", "labels"):
        assert isinstance(back[key], np.ndarray)
        assert back[key].dtype == doc[key].dtype and back[key].shape == doc[key].shape
        np.testing.assert_array_equal(back[key], doc[key])
    assert back["scalar"] == 1.5 and back["count"] == 7
    assert back["nested"] == {"list": [1, 2.5, "x", None]}
    back["spectrum"][0] = 9.0  # decoded arrays are ordinary, writable arrays


def _ext(header: list, payload: bytes) -> bytes:
    return msgpack.packb(
        {"x": msgpack.ExtType(NDARRAY_EXT, msgpack.packb(header) + payload)}, use_bin_type=True
    )


@pytest.mark.parametrize(
    ("header", "payload", "message"),
    [
        (["|O", [1]], b"\0" * 8, "not allowed"),  # object arrays could hold anything
        (["<V8", [1]], b"\0" * 8, "not allowed"),
        (["<f8", [3]], b"\0" * 8, "does not match"),  # shape and bytes disagree
        (["<f8", [-1]], b"", "bad array shape"),
        (["no-such-dtype", [1]], b"\0", "bad array dtype"),
    ],
)
def test_hostile_arrays_are_refused(header, payload, message):
    with pytest.raises(DecodeError, match=message):
        decode(_ext(header, payload))


def test_unknown_extensions_and_values_are_refused():
    with pytest.raises(DecodeError, match="unknown msgpack extension"):
        decode(msgpack.packb(msgpack.ExtType(7, b"x")))
    with pytest.raises(TypeError, match="cannot encode"):
        encode({"x": object()})
