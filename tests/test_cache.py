"""The response cache in process: keys, hits, copies, and its byte bound.

(The daemon-level behaviour, answers across versions and its metrics, is in
``tests/monitoring/test_cache.py``.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from appliance.cache import ResponseCache

Array = np.ndarray[Any, Any]


def _x(value: float, rows: int = 1) -> dict[str, Array]:
    return {"x": np.full((rows, 4), value, np.float32)}


def test_equal_tensors_share_a_key_and_anything_else_does_not() -> None:
    cache = ResponseCache("m", 1, 10_000)
    key = cache.key(_x(1.0), [])
    assert cache.key(_x(1.0), []) == key
    assert cache.key(_x(2.0), []) != key  # other bytes
    assert cache.key(_x(1.0, rows=2), []) != key  # other shape
    assert cache.key({"x": np.full((1, 4), 1.0, np.float64)}, []) != key  # other dtype
    assert cache.key({"y": _x(1.0)["x"]}, []) != key  # other name
    assert cache.key(_x(1.0), ["y"]) != key  # other outputs asked for
    assert ResponseCache("m", 2, 10_000).key(_x(1.0), []) != key  # other version


def test_a_hit_returns_what_was_put_read_only_and_counts() -> None:
    cache = ResponseCache("m", 1, 10_000)
    key = cache.key(_x(1.0), [])
    assert cache.get(key) is None
    batch = np.arange(8, dtype=np.float32).reshape(2, 4)
    cache.put(key, {"y": batch[:1]})  # a slice of a batch's output
    batch[0, 0] = 99.0  # the batch is reused: the cached copy must not change
    hit = cache.get(key)
    assert hit is not None
    np.testing.assert_array_equal(hit["y"], [[0, 1, 2, 3]])
    with pytest.raises(ValueError):
        hit["y"][0, 0] = 5.0
    assert (cache.hits, cache.misses) == (1, 1)


def test_least_recently_used_entries_leave_first_within_the_byte_bound() -> None:
    entry = 256 + 16  # bookkeeping plus one row of four float32
    cache = ResponseCache("m", 1, 3 * entry)
    keys = [cache.key(_x(float(i)), []) for i in range(4)]
    for key in keys[:3]:
        cache.put(key, {"y": np.zeros((1, 4), np.float32)})
    assert cache.get(keys[0]) is not None  # now the most recently used
    cache.put(keys[3], {"y": np.zeros((1, 4), np.float32)})
    assert len(cache) == 3 and cache.size <= 3 * entry
    assert cache.get(keys[1]) is None  # the least recently used left
    assert cache.get(keys[0]) is not None and cache.get(keys[3]) is not None


def test_an_answer_larger_than_the_cache_is_not_kept() -> None:
    cache = ResponseCache("m", 1, 512)
    key = cache.key(_x(1.0), [])
    cache.put(key, {"y": np.zeros((100, 4), np.float32)})
    assert len(cache) == 0 and cache.size == 0
