"""The response cache: exact-match answers for repeated requests, bounded in bytes.

Owns one model version's cache; the loaded model holds it (``LoadedModel.cache``) and
asks it before queueing a request, since a cache changes answers: serving, not
observing. Monitoring only reads its counters. The key is a BLAKE2b digest of the model
name, version, requested outputs and every input's name, datatype, shape and bytes, so two requests
share an entry only when the model would see the very same tensors; a cache belongs to
one loaded version, and the version is in the key too, so a newer version never answers
with an older one's result. Least recently used entries leave first once the outputs
held pass ``capacity`` bytes.

Off by default (``cache_bytes = 0``). Only for deterministic models: a model that samples
(dropout at inference, generation with temperature) would answer a repeated request with
its first answer forever. Used from the event loop only, so it takes no lock.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
Outputs = dict[str, Array]
#: Bookkeeping per entry (key, dict, array headers), counted against the capacity.
_ENTRY_OVERHEAD = 256


class ResponseCache:
    def __init__(self, model: str, version: int, capacity: int):
        self.model = model
        self.version = version
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self.size = 0  # bytes held, overhead included
        self._entries: OrderedDict[bytes, tuple[Outputs, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, inputs: Mapping[str, Array], outputs: Sequence[str]) -> bytes:
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{self.model}\0{self.version}\0{','.join(outputs)}\0".encode())
        for name in sorted(inputs):
            array = np.ascontiguousarray(inputs[name])
            digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
            digest.update(array.data)
        return digest.digest()

    def get(self, key: bytes) -> Outputs | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[0]

    def put(self, key: bytes, outputs: Mapping[str, Array]) -> None:
        """Keep a copy of ``outputs`` (read-only); too large for the cache: not kept."""
        size = _ENTRY_OVERHEAD + sum(a.nbytes for a in outputs.values())
        if size > self.capacity or key in self._entries:
            return
        kept: Outputs = {}
        for name, array in outputs.items():
            # A copy: a slice of a batch's output would hold the whole batch alive.
            copy = np.array(array, copy=True)
            copy.setflags(write=False)
            kept[name] = copy
        self._entries[key] = (kept, size)
        self.size += size
        while self.size > self.capacity:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.size -= evicted


__all__ = ["ResponseCache"]
