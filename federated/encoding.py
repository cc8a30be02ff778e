"""Wire encodings of a site's model update: float32 (as is), fp16 and int8.

Pure NumPy, no Flower: ``encode_update`` turns (global, local) weights into the arrays a
site sends; ``decode_update`` turns them back into local weights given the same global
weights. ``federated.mods`` wires the pair into the ClientApp and the server strategy.

- float32: the local weights themselves, one array per tensor (Flower's default).
- fp16: the update (local - global) of every tensor, concatenated into one float16 array.
- int8: the update of every tensor, symmetric per-tensor scale s = max|Δ| / 127,
  q = round(Δ / s), concatenated into one int8 array, plus one float32 array of scales.

Concatenating matters: Flower serialises each array with a ~128-byte ``.npy`` header, so
eight small tensors sent separately would eat much of int8's 4x saving.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from federated.errors import UpdateFormatError
from federated.settings import Encoding

FP16_KEY = "update.fp16"
INT8_KEY = "update.int8"
SCALE_KEY = "update.int8-scale"
INT8_MAX = 127

Arrays = dict[str, NDArray[np.generic]]


def encode_update(
    global_arrays: Mapping[str, NDArray[np.generic]],
    local_arrays: Mapping[str, NDArray[np.generic]],
    encoding: Encoding,
) -> Arrays:
    """The arrays a site sends for ``encoding``; tensors keep ``global_arrays``' order."""
    if list(global_arrays) != list(local_arrays):
        raise UpdateFormatError(
            f"local weights: expected tensors {list(global_arrays)}, got {list(local_arrays)}"
        )
    if encoding is Encoding.FLOAT32:
        return {k: np.asarray(v) for k, v in local_arrays.items()}
    deltas = [
        np.asarray(local_arrays[k], dtype=np.float32) - np.asarray(g, dtype=np.float32)
        for k, g in global_arrays.items()
    ]
    if encoding is Encoding.FP16:
        return {FP16_KEY: np.concatenate([d.ravel() for d in deltas]).astype(np.float16)}
    scales = np.asarray([np.abs(d).max(initial=0.0) / INT8_MAX for d in deltas], np.float32)
    # A tensor that did not move (e.g. standardisation buffers) has scale 0: send zeros.
    safe = np.where(scales > 0, scales, 1.0)
    quantised = [
        np.clip(np.rint(d / s), -INT8_MAX, INT8_MAX).astype(np.int8).ravel()
        for d, s in zip(deltas, safe, strict=True)
    ]
    return {INT8_KEY: np.concatenate(quantised), SCALE_KEY: scales}


def decode_update(
    global_arrays: Mapping[str, NDArray[np.generic]], received: Mapping[str, NDArray[np.generic]]
) -> Arrays:
    """Local weights from what a site sent, whichever encoding it used."""
    encoding = detect_encoding(received)
    if encoding is Encoding.FLOAT32:
        _check_same_tensors(global_arrays, received)
        return {k: np.asarray(received[k]) for k in global_arrays}
    sizes = [int(np.asarray(g).size) for g in global_arrays.values()]
    if encoding is Encoding.FP16:
        flat = np.asarray(received[FP16_KEY], dtype=np.float32)
        scales = np.ones(len(sizes), np.float32)
    else:
        flat = np.asarray(received[INT8_KEY]).astype(np.float32)
        scales = np.asarray(received[SCALE_KEY], dtype=np.float32)
        if scales.shape != (len(sizes),) or not np.isfinite(scales).all():
            raise UpdateFormatError(
                f"int8 update: expected {len(sizes)} finite scales, got shape {scales.shape}"
            )
    if flat.shape != (sum(sizes),):
        raise UpdateFormatError(
            f"{encoding.value} update: expected {sum(sizes)} values, got shape {flat.shape}"
        )
    out: Arrays = {}
    offset = 0
    for (name, g), size, scale in zip(global_arrays.items(), sizes, scales, strict=True):
        g32 = np.asarray(g, dtype=np.float32)
        delta = flat[offset : offset + size].reshape(g32.shape) * scale
        out[name] = (g32 + delta).astype(np.asarray(g).dtype)
        offset += size
    return out


def detect_encoding(received: Mapping[str, NDArray[np.generic]]) -> Encoding:
    """Which encoding a reply's arrays use, from their keys."""
    if INT8_KEY in received:
        if set(received) != {INT8_KEY, SCALE_KEY}:
            raise UpdateFormatError(
                f"int8 update: expected arrays {[INT8_KEY, SCALE_KEY]}, got {sorted(received)}"
            )
        return Encoding.INT8
    if FP16_KEY in received:
        if set(received) != {FP16_KEY}:
            raise UpdateFormatError(
                f"fp16 update: expected array {FP16_KEY!r} only, got {sorted(received)}"
            )
        return Encoding.FP16
    return Encoding.FLOAT32


def _check_same_tensors(
    global_arrays: Mapping[str, NDArray[np.generic]], received: Mapping[str, NDArray[np.generic]]
) -> None:
    if set(received) != set(global_arrays):
        raise UpdateFormatError(
            f"float32 update: expected tensors {sorted(global_arrays)}, got {sorted(received)}"
        )
    for name, g in global_arrays.items():
        if np.shape(received[name]) != np.shape(g):
            raise UpdateFormatError(
                f"float32 update {name!r}: expected shape {np.shape(g)}, got "
                f"{np.shape(received[name])}"
            )


__all__ = ["FP16_KEY", "INT8_KEY", "SCALE_KEY", "decode_update", "detect_encoding", "encode_update"]
