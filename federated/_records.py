"""Conversions between Flower records and what the rest of the app uses: NumPy dicts,
checked metric values, and error replies."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from flwr.app import Array, ArrayRecord, Error, Message, MetricRecord
from flwr.common.constant import ErrorCode
from numpy.typing import NDArray

from federated.errors import FederatedError, UpdateFormatError

_site_log = logging.getLogger("federated.site")


def to_numpy(record: ArrayRecord) -> dict[str, NDArray[np.generic]]:
    """An ``ArrayRecord`` as a name -> array dict, keeping its order."""
    return {name: array.numpy() for name, array in record.items()}


def to_record(arrays: Mapping[str, NDArray[np.generic]]) -> ArrayRecord:
    """A name -> array dict as an ``ArrayRecord``, keeping its order."""
    return ArrayRecord({name: Array(np.ascontiguousarray(a)) for name, a in arrays.items()})


def named_arrays(
    arrays: Sequence[NDArray[np.generic]], names: Sequence[str]
) -> dict[str, NDArray[np.generic]]:
    """Pair an unnamed array list (flwr's legacy ``Parameters``) with the model's names."""
    if len(arrays) != len(names):
        raise UpdateFormatError(
            f"expected {len(names)} arrays (the model's state), got {len(arrays)}"
        )
    return dict(zip(names, arrays, strict=True))


def metric_number(record: MetricRecord, key: str) -> float:
    """One scalar metric; a missing or list-valued one is a malformed reply."""
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UpdateFormatError(f"metric {key!r}: expected a number, got {value!r}")
    return float(value)


def metric_vector(record: MetricRecord, key: str) -> NDArray[np.float64]:
    """One list-valued metric as a float64 vector."""
    value = record.get(key)
    if not isinstance(value, list):
        raise UpdateFormatError(f"metric {key!r}: expected a list of numbers, got {value!r}")
    return np.asarray(value, dtype=np.float64)


def error_reply(msg: Message, exc: FederatedError) -> Message:
    """Reply to ``msg`` with ``exc`` as the reason; logged here in one line, no traceback.

    The reason travels to the server, so it names what was wrong, never data values.
    """
    _site_log.error("%s (%s): %s", type(exc).__name__, exc.status.value, exc)
    reason = f"{type(exc).__name__}: {exc}"
    return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=msg)


__all__ = [
    "error_reply",
    "metric_number",
    "metric_vector",
    "named_arrays",
    "to_numpy",
    "to_record",
]
