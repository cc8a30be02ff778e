"""Dynamic batching: requests that queue while a session is busy form its next batch.

Owns the per-model queue and the worker threads that run the session. It does not know
what a model is or how to validate a request (``appliance.model`` does that), and it
knows nothing of gRPC.

How a batch forms (DESIGN.md, "Batching"): a worker takes the oldest request, then every
queued request whose tensors differ from it only in the batch dimension, up to
``max_batch_size`` rows. With ``max_queue_delay_us`` = 0 an idle box runs a request at
once, and a busy one batches whatever queued during the previous run. A positive delay
waits that long for a fuller batch. Requests whose deadline has passed are dropped
before they run (checked when drawn, and again after a wait for company); a full queue
refuses at once.

Workers are plain threads, not event-loop tasks: ONNX Runtime releases the GIL while it
computes, and a thread blocked on a condition costs one hand-off per batch instead of
two (task, then executor). Results go back to the event loop in one callback per batch.

One exception: a request that finds the model idle (nothing queued, no batch running)
is run on the event loop at once when the model's runs are short (``INLINE_MAX_NS``):
it would run alone anyway, and for a model that computes in microseconds the two
thread hand-offs (wake the worker, wake the loop) cost more than the run. Slow models
never take this path (their recent runs are too long), so they never block the loop.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from appliance.errors import (
    ApplianceError,
    DeadlineExceededError,
    InferenceError,
    NotReadyError,
    QueueFullError,
)

log = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]
Feeds = dict[str, Array]
RunFn = Callable[[Feeds], Feeds]
#: (name, shape without the batch dimension, dtype) for every input, sorted by name.
BatchKey = tuple[tuple[str, tuple[int, ...], str], ...]
#: Session runs at most this long (recent average) may run on the event loop when the
#: model is idle: about what a worker hand-off and the wake-up back cost on a small box.
INLINE_MAX_NS = 100_000
#: Weight of the newest run in the recent average of run times.
_RECENT_WEIGHT = 0.2


@dataclass(frozen=True)
class BatchSettings:
    enabled: bool = True
    max_batch_size: int = 32
    max_queue_delay_us: int = 0
    max_queue_size: int = 1024
    instances: int = 1


@dataclass(frozen=True)
class BatchRecord:
    """What one session run did, for statistics and metrics."""

    rows: int
    requests: int
    queue_ns: tuple[int, ...]  # per request: enqueue to start of run
    compute_ns: int
    ok: bool
    # The batch as it ran, for drift statistics; read, never kept, by the callback.
    inputs: Feeds | None = None
    outputs: Feeds | None = None  # None when the run failed


@dataclass(eq=False)  # identity: requests are compared by who they are, not by tensors
class _Request:
    feeds: Feeds
    rows: int
    key: BatchKey
    future: asyncio.Future[Feeds]
    loop: asyncio.AbstractEventLoop
    deadline: float | None  # time.monotonic() seconds
    enqueued_ns: int = field(default_factory=time.perf_counter_ns)


def batch_key(feeds: Feeds, batched: bool) -> BatchKey:
    """Requests with equal keys can be stacked along the first axis."""
    start = 1 if batched else 0
    return tuple(sorted((n, a.shape[start:], a.dtype.str) for n, a in feeds.items()))


class Batcher:
    """The queue and worker threads in front of one model's session."""

    def __init__(
        self,
        name: str,
        run: RunFn,
        settings: BatchSettings,
        on_batch: Callable[[BatchRecord], None] | None = None,
    ):
        self.name = name
        self.settings = settings
        self._run = run
        self._on_batch = on_batch
        # A C-level queue: put() from the event loop costs no Python lock, and a worker
        # blocked in get() is woken by the put itself. None is the stop sentinel.
        self._inbox: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        # Requests a worker drew but could not batch yet (other shapes): served first.
        self._held: deque[_Request] = deque()
        self._forming = threading.Lock()  # one worker forms a batch at a time
        self._submitted = 0  # written by the event-loop thread only
        self._done = 0  # written by workers only, under _forming
        #: Per worker: running a batch now (each written by its own worker only).
        self._busy = [False] * settings.instances
        #: Recent average ns of one session run; None until a worker has run one.
        self.recent_run_ns: float | None = None
        self._closing = False
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"batcher-{name}-{i}", daemon=True)
            for i in range(settings.instances)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def depth(self) -> int:
        """Requests waiting (not yet running)."""
        return max(0, self._submitted - self._done)

    def submit(self, feeds: Feeds, rows: int, deadline: float | None) -> asyncio.Future[Feeds]:
        """Queue a validated request; the future resolves with its outputs."""
        if self._closing:
            raise NotReadyError(f"model {self.name!r} is draining; retry on another version")
        if self.depth >= self.settings.max_queue_size:
            raise QueueFullError(
                f"queue of model {self.name!r} is full "
                f"({self.settings.max_queue_size} requests waiting); retry later"
            )
        loop = asyncio.get_running_loop()
        if self._may_run_inline():
            return self._run_inline(loop, feeds, rows, deadline)
        request = _Request(
            feeds=feeds,
            rows=rows,
            key=batch_key(feeds, self.settings.enabled),
            future=loop.create_future(),
            loop=loop,
            deadline=deadline,
        )
        self._submitted += 1
        self._inbox.put(request)
        return request.future

    def _may_run_inline(self) -> bool:
        recent = self.recent_run_ns
        return (
            recent is not None
            and recent <= INLINE_MAX_NS
            and self.settings.max_queue_delay_us == 0  # asked to wait for company
            and self._submitted == self._done
            and not self._held
            and not any(self._busy)
        )

    def _run_inline(
        self,
        loop: asyncio.AbstractEventLoop,
        feeds: Feeds,
        rows: int,
        deadline: float | None,
    ) -> asyncio.Future[Feeds]:
        """The idle model's request, run here and now (see the module docstring)."""
        future: asyncio.Future[Feeds] = loop.create_future()
        if deadline is not None and deadline <= time.monotonic():
            future.set_exception(
                DeadlineExceededError(f"deadline passed before model {self.name!r} ran it")
            )
            return future
        start = time.perf_counter_ns()
        outputs, result = self._run_one(feeds)
        self._record(BatchRecord(rows, 1, (0,), time.perf_counter_ns() - start,
                                 outputs is not None, feeds, outputs))  # fmt: skip
        _set(future, result)
        return future

    def _run_one(self, feeds: Feeds) -> tuple[Feeds | None, Feeds | ApplianceError]:
        try:
            outputs = self._run(feeds)
        except ApplianceError as exc:
            return None, exc
        except Exception:  # a bug: log it, answer the caller, keep serving
            log.exception("model %r: unexpected failure running a request", self.name)
            return None, InferenceError("internal error running the model")
        return outputs, outputs

    def _record(self, record: BatchRecord) -> None:
        runs = self.recent_run_ns
        ns = float(record.compute_ns)
        self.recent_run_ns = ns if runs is None else runs + _RECENT_WEIGHT * (ns - runs)
        if self._on_batch is None:
            return
        try:
            self._on_batch(record)
        except Exception:  # statistics and monitoring never take serving down
            log.exception("model %r: recording a batch failed", self.name)

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new requests, finish queued ones, stop the workers.

        Returns False if the workers were still busy after ``timeout`` seconds.
        """
        self._closing = True
        self._inbox.put(None)  # each worker passes it on to the next as it stops
        end = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if end is None else max(0.0, end - time.monotonic()))
        stopped = not any(t.is_alive() for t in self._threads)
        if stopped:
            self._refuse_stragglers()
        return stopped

    def _refuse_stragglers(self) -> None:
        """A request queued in the instant between the closing check and the put."""
        while True:
            try:
                request = self._inbox.get_nowait()
            except queue.Empty:
                return
            if request is not None:
                _resolve(request, error=NotReadyError(f"model {self.name!r} was unloaded"))

    # -- worker side (runs in the batcher's threads) ---------------------------

    def _work(self, index: int) -> None:
        while True:
            try:
                with self._forming:
                    batch = self._next_batch()
            except Exception:  # a bug here must not stop the model: log, keep serving
                log.exception("model %r: unexpected failure forming a batch", self.name)
                continue
            if batch is None:
                self._inbox.put(None)  # let the next worker stop too
                return
            if batch:
                self._busy[index] = True
                try:
                    self._execute(batch, index)
                finally:
                    self._busy[index] = False

    def _next_batch(self) -> list[_Request] | None:
        """Block for the oldest live request, then gather compatible ones that fit.

        None once closing and nothing is left.
        """
        first = self._first()
        if first is None:
            return None
        batch, rows = [first], first.rows
        limit = self.settings.max_batch_size
        if not self.settings.enabled:
            return batch
        for request in list(self._held):  # older than anything in the inbox
            if rows >= limit:
                break
            if request.key == first.key and rows + request.rows <= limit:
                self._held.remove(request)
                self._done += 1
                batch.append(request)
                rows += request.rows
        delay = self.settings.max_queue_delay_us / 1e6
        until = time.monotonic() + delay
        while rows < limit:
            drawn = self._draw(until - time.monotonic() if delay > 0 else 0.0)
            if drawn is None:
                break
            if drawn.key == first.key and rows + drawn.rows <= limit:
                self._done += 1
                batch.append(drawn)
                rows += drawn.rows
            else:
                self._held.append(drawn)
        if delay > 0:
            # Waiting for company can outlast a caller's deadline (or the caller): the
            # batch runs only what is still wanted.
            batch = [request for request in batch if self._live(request)]
        return batch

    def _first(self) -> _Request | None:
        while True:
            if self._held:
                request: _Request | None = self._held.popleft()
            else:
                request = self._inbox.get()
                if request is None:  # closing: finish what is left, then stop
                    request = self._draw(0.0)
                    if request is None:
                        return None
            assert request is not None
            self._done += 1
            if self._live(request):
                return request

    def _draw(self, wait: float) -> _Request | None:
        """The next live request from the inbox within ``wait`` seconds, else None."""
        while True:
            try:
                request = self._inbox.get(timeout=wait) if wait > 0 else self._inbox.get_nowait()
            except queue.Empty:
                return None
            if request is None:
                self._inbox.put(None)  # keep the stop sentinel for _first
                return None
            if self._live(request):
                return request
            self._done += 1

    def _live(self, request: _Request) -> bool:
        """False (and the caller answered) when cancelled or past its deadline."""
        if request.future.done():  # cancelled by the client
            return False
        if request.deadline is not None and request.deadline <= time.monotonic():
            waited_ms = (time.perf_counter_ns() - request.enqueued_ns) / 1e6
            message = (
                f"deadline passed after {waited_ms:.1f} ms in the queue of model "
                f"{self.name!r}; the request was not run"
            )
            _resolve(request, error=DeadlineExceededError(message))
            return False
        return True

    def _execute(self, batch: list[_Request], index: int = 0) -> None:
        start = time.perf_counter_ns()
        queue_ns = tuple(start - r.enqueued_ns for r in batch)
        rows = sum(r.rows for r in batch)
        feeds: Feeds | None = None
        outputs: Feeds | None = None
        try:
            feeds = _stack(batch)
            outputs = self._run(feeds)
            results: list[Feeds | ApplianceError] = list(_split(outputs, batch, rows))
            ok = True
        except ApplianceError as exc:
            results, ok = self._isolate(batch, exc), False
        except Exception as exc:  # a bug: log it, answer every caller, keep serving
            log.exception("model %r: unexpected failure running a batch", self.name)
            results, ok = [InferenceError("internal error running the model")] * len(batch), False
            del exc
        compute_ns = time.perf_counter_ns() - start
        # Recorded before the callers are answered: a client that has its answer finds
        # its request in the statistics.
        self._record(
            BatchRecord(rows, len(batch), queue_ns, compute_ns, ok, feeds, outputs if ok else None)
        )
        self._busy[index] = False  # before the answers: a caller's next request sees it idle
        _resolve_all(batch, results)

    def _isolate(self, batch: list[_Request], exc: ApplianceError) -> list[Feeds | ApplianceError]:
        """A batch failed: rerun its requests one by one, so one bad request fails alone."""
        if len(batch) == 1:
            return [exc]
        results: list[Feeds | ApplianceError] = []
        for request in batch:
            try:
                results.append(self._run(request.feeds))
            except ApplianceError as single:
                results.append(single)
        return results


def _stack(batch: list[_Request]) -> Feeds:
    if len(batch) == 1:
        return batch[0].feeds
    return {name: np.concatenate([r.feeds[name] for r in batch]) for name in batch[0].feeds}


def _split(outputs: Feeds, batch: list[_Request], rows: int) -> list[Feeds]:
    if len(batch) == 1:
        return [outputs]
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != rows:
            raise InferenceError(
                f"output {name!r} has shape {list(array.shape)}, expected {rows} rows "
                "along the first axis; disable batching for this model"
            )
    parts: list[Feeds] = []
    offset = 0
    for request in batch:
        end = offset + request.rows
        parts.append({name: array[offset:end] for name, array in outputs.items()})
        offset = end
    return parts


def _resolve(request: _Request, *, error: ApplianceError) -> None:
    request.loop.call_soon_threadsafe(_set, request.future, error)


def _resolve_all(batch: list[_Request], results: list[Feeds | ApplianceError]) -> None:
    """One wake-up of the event loop per batch, not per request."""
    pairs = [(r.future, res) for r, res in zip(batch, results, strict=True)]
    batch[0].loop.call_soon_threadsafe(_set_many, pairs)


def _set_many(pairs: list[tuple[asyncio.Future[Feeds], Feeds | ApplianceError]]) -> None:
    for future, result in pairs:
        _set(future, result)


def _set(future: asyncio.Future[Feeds], result: Feeds | ApplianceError) -> None:
    if future.done():
        return
    if isinstance(result, ApplianceError):
        future.set_exception(result)
    else:
        future.set_result(result)


__all__ = ["BatchRecord", "BatchSettings", "Batcher", "batch_key"]
