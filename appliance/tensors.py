"""Tensor datatypes and bytes: V2 names, numpy and ONNX Runtime types, decoding.

Owns the mapping between the three type systems and turning request bytes or typed
values into numpy arrays (and arrays back into bytes). Knows nothing of protobuf or of
any model; ``appliance.model`` checks requests against a model's specs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from appliance.errors import InvalidInputError

# V2 datatype -> numpy dtype (little-endian, as the protocol's raw contents are).
V2_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}

# ONNX Runtime's NodeArg.type -> V2 datatype.
ORT_TO_V2: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
    "tensor(bfloat16)": "BF16",
}

V2_DATATYPES = (*V2_TO_NUMPY, "BYTES", "BF16")


def element_count(shape: Sequence[int]) -> int:
    return math.prod(shape)


def decode(
    name: str,
    datatype: str,
    shape: Sequence[int],
    raw: bytes | None = None,
    values: Sequence[Any] | None = None,
) -> np.ndarray[Any, Any]:
    """Build the array for one input from raw bytes or typed values.

    The caller has already checked ``datatype`` against the model; here the payload is
    checked against ``shape`` before anything is allocated, so a request claiming a huge
    shape with a few bytes costs nothing.
    """
    if datatype == "BYTES":
        return _decode_bytes(name, shape, raw, values)
    dtype = V2_TO_NUMPY.get(datatype)
    if dtype is None:
        raise InvalidInputError(
            f"input {name!r}: datatype {datatype} cannot be served; expected one of "
            f"{', '.join(V2_TO_NUMPY)}"
        )
    count = element_count(shape)
    if raw is not None:
        expected = count * dtype.itemsize
        if len(raw) != expected:
            raise InvalidInputError(
                f"input {name!r}: shape {list(shape)} of {datatype} needs {expected} bytes, "
                f"got {len(raw)}"
            )
        return np.frombuffer(raw, dtype=dtype).reshape(shape)
    if values is None or len(values) != count:
        got = 0 if values is None else len(values)
        raise InvalidInputError(
            f"input {name!r}: shape {list(shape)} needs {count} values, got {got}"
        )
    try:
        array = np.asarray(values, dtype=dtype)
    except (OverflowError, ValueError):
        # numpy's text names the value ("Python integer 424242 out of bounds"): patient
        # data, so neither it nor its traceback goes any further.
        raise InvalidInputError(
            f"input {name!r}: expected {count} values within the range of {datatype}"
            f"{_range_of(dtype)}, got at least one outside it"
        ) from None
    return array.reshape(shape)


def _decode_bytes(
    name: str, shape: Sequence[int], raw: bytes | None, values: Sequence[Any] | None
) -> np.ndarray[Any, Any]:
    """BYTES elements: in raw contents each is a 4-byte little-endian length and its
    bytes (the V2 and Triton layout); typed contents carry them as a list."""
    count = element_count(shape)
    if raw is None:
        if values is None or len(values) != count:
            got = 0 if values is None else len(values)
            raise InvalidInputError(
                f"input {name!r}: shape {list(shape)} needs {count} values, got {got}"
            )
        items = [bytes(v) for v in values]
    else:
        items = []
        offset = 0
        while offset < len(raw) and len(items) <= count:
            if offset + 4 > len(raw):
                break
            size = int.from_bytes(raw[offset : offset + 4], "little")
            offset += 4
            if offset + size > len(raw):
                raise InvalidInputError(
                    f"input {name!r}: BYTES element {len(items)} claims {size} bytes, "
                    f"{len(raw) - offset} are left"
                )
            items.append(raw[offset : offset + size])
            offset += size
        if len(items) != count or offset != len(raw):
            raise InvalidInputError(
                f"input {name!r}: shape {list(shape)} of BYTES needs {count} length-prefixed "
                f"elements filling {len(raw)} bytes, got {len(items)}"
            )
    array = np.empty(count, dtype=np.object_)
    array[:] = items
    return array.reshape(shape)


def _range_of(dtype: np.dtype[Any]) -> str:
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return f" ({info.min} to {info.max})"
    return ""


def encode(array: np.ndarray[Any, Any]) -> bytes:
    """Raw output contents: little-endian, row-major; BYTES (an object array of bytes)
    as length-prefixed elements."""
    if array.dtype == np.object_:
        return b"".join(len(b).to_bytes(4, "little") + b for b in array.reshape(-1))
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array).tobytes()


def v2_datatype(array: np.ndarray[Any, Any]) -> str:
    for name, dtype in V2_TO_NUMPY.items():
        if array.dtype == dtype:
            return name
    raise InvalidInputError(f"numpy dtype {array.dtype} has no V2 datatype")


__all__ = [
    "ORT_TO_V2",
    "V2_DATATYPES",
    "V2_TO_NUMPY",
    "decode",
    "element_count",
    "encode",
    "v2_datatype",
]
