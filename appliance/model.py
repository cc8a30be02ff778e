"""A loaded model version: its specs, request validation, batcher, cache and state.

Owns everything about one ``(name, version)`` that is serving: checking a request against
the model's inputs (every client mistake gets a message naming what was expected and
what arrived, with the client's names cut: ``appliance.clip``), answering from its
response cache or handing it to the batcher, and the V2 statistics others fill in (per
batch here, per request by the request recorder). Loading from disk is
``appliance.repository``; choosing which version answers is ``appliance.manager``.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from appliance.batcher import Batcher, BatchRecord, BatchSettings
from appliance.cache import ResponseCache
from appliance.clip import clip, clip_list, quoted
from appliance.errors import InvalidInputError, NotReadyError
from appliance.package.manifest import Manifest, TensorSpec
from appliance.runtime import Session
from appliance.tensors import V2_TO_NUMPY, decode, element_count

if TYPE_CHECKING:
    from appliance.embedding import TextEmbedder
    from appliance.monitoring import ModelMonitor

Array = np.ndarray[Any, Any]
PLATFORM = "onnxruntime_onnx"


class ModelState(enum.Enum):
    """A loaded version's state, spelled as V2's RepositoryIndex spells it. A version
    is built fully before the manager adds it, so it starts READY."""

    READY = "READY"
    UNLOADING = "UNLOADING"  # draining: queued and running requests finish
    UNAVAILABLE = "UNAVAILABLE"  # drained; about to be dropped


@dataclass(frozen=True)
class RequestTensor:
    """One input as it arrived: declared datatype and shape, raw bytes or typed values."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes | None = None
    values: Sequence[Any] | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int  # 0: no batch axis, requests run one by one as they are
    labels: tuple[str, ...] | None = None
    platform: str = PLATFORM

    def describe_inputs(self) -> str:
        return ", ".join(f"{s.name} ({s.datatype}, {list(s.shape)})" for s in self.inputs)


@dataclass
class Statistics:
    """Cumulative counters, the shape of V2 ModelStatistics. Updated from worker threads."""

    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    fail_ns: int = 0
    queue_count: int = 0
    queue_ns: int = 0
    compute_count: int = 0
    compute_ns: int = 0
    inference_count: int = 0  # rows
    execution_count: int = 0  # session runs
    last_inference_ms: int = 0
    batches: Counter[int] = field(default_factory=Counter)  # rows -> runs
    batch_ns: Counter[int] = field(default_factory=Counter)  # rows -> compute ns
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_batch(self, record: BatchRecord) -> None:
        with self.lock:
            self.queue_count += record.requests
            self.queue_ns += sum(record.queue_ns)
            self.execution_count += 1
            self.batches[record.rows] += 1
            self.batch_ns[record.rows] += record.compute_ns
            if record.ok:
                self.compute_count += record.requests
                self.compute_ns += record.compute_ns * record.requests
                self.inference_count += record.rows
                self.last_inference_ms = int(time.time() * 1000)

    def record_request(self, ok: bool, elapsed_ns: int) -> None:
        with self.lock:
            if ok:
                self.success_count += 1
                self.success_ns += elapsed_ns
            else:
                self.fail_count += 1
                self.fail_ns += elapsed_ns


class LoadedModel:
    """One model version in memory, answering requests through its batcher."""

    def __init__(
        self,
        spec: ModelSpec,
        session: Session,
        settings: BatchSettings,
        manifest: Manifest | None = None,
        cache: ResponseCache | None = None,
    ):
        self.spec = spec
        self.session = session
        self.manifest = manifest
        #: Exact-match answers of this version (``[models.NAME] cache_bytes``); None: off.
        self.cache = cache
        self.stats = Statistics()
        self.state = ModelState.READY
        self.settings = settings
        self._batched = spec.max_batch_size > 0
        #: Metrics and drift hooks; set by the manager after loading.
        self.monitor: ModelMonitor | None = None
        #: Tokenizer and pooling of an embedding model; set by the manager when loading.
        self.embedder: TextEmbedder | None = None
        self.batcher = Batcher(
            f"{spec.name}:{spec.version}", session.run, settings, self._record_batch
        )

    def _record_batch(self, record: BatchRecord) -> None:
        """Worker thread, once per session run."""
        self.stats.record_batch(record)
        if self.monitor is not None:
            self.monitor.record_batch(record)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> int:
        return self.spec.version

    @property
    def ready(self) -> bool:
        return self.state is ModelState.READY

    @property
    def providers(self) -> tuple[str, ...]:
        """Execution providers its session runs on, preferred first."""
        return tuple(self.session.providers)

    async def infer(
        self,
        tensors: Sequence[RequestTensor],
        requested_outputs: Sequence[str] = (),
        deadline: float | None = None,
    ) -> dict[str, Array]:
        """Validate, queue, await: the outputs asked for (all when none named)."""
        if not self.ready:
            raise NotReadyError(
                f"model {self.name!r} version {self.version} is {self.state.value.lower()}"
            )
        wanted = self._check_outputs(requested_outputs)
        feeds, rows = self.validate(tensors)
        return await self._answer(feeds, rows, wanted, deadline)

    async def _answer(
        self, feeds: dict[str, Array], rows: int, wanted: list[str], deadline: float | None
    ) -> dict[str, Array]:
        """From the response cache when it holds this very request, else from a batch."""
        cache = self.cache
        key = cache.key(feeds, wanted) if cache is not None else b""
        if cache is not None and (hit := cache.get(key)) is not None:
            return hit
        outputs = await self.batcher.submit(feeds, rows, deadline)
        if wanted:
            outputs = {n: outputs[n] for n in wanted}
        if cache is not None:
            cache.put(key, outputs)
        return outputs

    def validate(self, tensors: Sequence[RequestTensor]) -> tuple[dict[str, Array], int]:
        """Check a request against the model's inputs; return the feeds and the row count."""
        by_name = self._match_names(tensors)
        feeds: dict[str, Array] = {}
        for spec in self.spec.inputs:
            tensor = by_name[spec.name]
            self._check_tensor(spec, tensor)
            feeds[spec.name] = decode(
                tensor.name, tensor.datatype, tensor.shape, tensor.raw, tensor.values
            )
        return feeds, self._rows(tensors)

    def _match_names(self, tensors: Sequence[RequestTensor]) -> dict[str, RequestTensor]:
        expected = self.spec.describe_inputs()
        if not tensors:
            raise InvalidInputError(
                f"model {self.name!r} expects inputs {expected}; the request has none"
            )
        names = [t.name for t in tensors]
        seen: set[str] = set()
        for name in names:  # linear: a request may carry a great many inputs
            if name in seen:
                raise InvalidInputError(f"input {quoted(name)} appears more than once")
            seen.add(name)
        known = {s.name for s in self.spec.inputs}
        extra = [n for n in names if n not in known]
        if extra:
            raise InvalidInputError(
                f"model {self.name!r} has no input {quoted(extra[0])}; expected inputs {expected}"
            )
        missing = [s.name for s in self.spec.inputs if s.name not in names]
        if missing:
            raise InvalidInputError(
                f"input {missing[0]!r} is missing; model {self.name!r} expects {expected}"
            )
        return {t.name: t for t in tensors}

    def _check_tensor(self, spec: TensorSpec, tensor: RequestTensor) -> None:
        if tensor.datatype != spec.datatype:
            raise InvalidInputError(
                f"input {spec.name!r}: expected datatype {spec.datatype}, got "
                f"{clip(tensor.datatype) if tensor.datatype else '(empty)'}"
            )
        shape = tensor.shape
        if len(shape) != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, shape, strict=False)
        ):
            raise InvalidInputError(
                f"input {spec.name!r}: expected shape {list(spec.shape)} (-1: any size), "
                f"got {clip_list(shape)}"
            )
        if any(d < 1 for d in shape):
            raise InvalidInputError(
                f"input {spec.name!r}: every dimension must be at least 1, got {list(shape)}"
            )
        limit = self._max_elements(spec)
        if element_count(shape) > limit:
            raise InvalidInputError(
                f"input {spec.name!r}: shape {list(shape)} has {element_count(shape)} elements, "
                f"more than the {limit} this server accepts in one request"
            )

    def _max_elements(self, spec: TensorSpec) -> int:
        # Bounded by what a message can carry anyway; guards typed contents and BOOL.
        itemsize = V2_TO_NUMPY[spec.datatype].itemsize if spec.datatype in V2_TO_NUMPY else 1
        return (1 << 31) // itemsize

    def _rows(self, tensors: Sequence[RequestTensor]) -> int:
        if not self._batched:
            return 1
        rows = {t.name: t.shape[0] for t in tensors}
        if len(set(rows.values())) > 1:
            # Names checked against the model's: bounded, safe to list.
            raise InvalidInputError(f"inputs disagree on the batch size (first dimension): {rows}")
        count = next(iter(rows.values()))
        if count > self.spec.max_batch_size:
            raise InvalidInputError(
                f"batch of {count} rows is over the maximum of {self.spec.max_batch_size} "
                f"for model {self.name!r}; split the request"
            )
        return count

    def _check_outputs(self, requested: Sequence[str]) -> list[str]:
        known = [s.name for s in self.spec.outputs]
        for name in requested:
            if name not in known:
                raise InvalidInputError(
                    f"model {self.name!r} has no output {quoted(name)}; expected one of {known}"
                )
        return list(dict.fromkeys(requested))

    def drain(self, timeout: float | None = None) -> bool:
        """Stop taking requests, let queued and running ones finish, release workers."""
        if self.state is ModelState.READY:
            self.state = ModelState.UNLOADING
        done = self.batcher.close(timeout)
        self.state = ModelState.UNAVAILABLE
        return done


__all__ = [
    "PLATFORM",
    "LoadedModel",
    "ModelSpec",
    "ModelState",
    "RequestTensor",
    "Statistics",
]
