"""The batcher alone, with a plain numpy function as the model: merge, split, order,
bounds and shutdown. (The daemon-level behaviour is in tests/serving/test_batching.py.)"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from appliance.batcher import Batcher, BatchRecord, BatchSettings
from appliance.errors import InvalidInputError, NotReadyError, QueueFullError

Feeds = dict[str, np.ndarray[Any, Any]]


class Model:
    """y = 2x, slow enough that requests queue up behind a running batch."""

    def __init__(self, delay: float = 0.02):
        self.delay = delay
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, feeds: Feeds) -> Feeds:
        self.gate.wait()
        time.sleep(self.delay)
        x = feeds["x"]
        if (x < 0).any():
            raise InvalidInputError("negative input")
        self.batches.append(x.shape[0])
        return {"y": 2 * x}


def _feeds(value: float, rows: int = 1, width: int = 3) -> Feeds:
    return {"x": np.full((rows, width), value, np.float32)}


def test_queued_requests_merge_and_each_gets_its_own_rows() -> None:
    model = Model()
    records: list[BatchRecord] = []
    batcher = Batcher("m", model, BatchSettings(max_batch_size=64), records.append)

    async def main() -> list[Feeds]:
        futures = [batcher.submit(_feeds(i, rows=1 + i % 3), 1 + i % 3, None) for i in range(30)]
        return list(await asyncio.gather(*futures))

    try:
        results = asyncio.run(main())
    finally:
        batcher.close(5)
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["y"], 2 * _feeds(i, rows=1 + i % 3)["x"])
    assert len(model.batches) < 30 and max(model.batches) > 3
    assert sum(r.rows for r in records) == sum(1 + i % 3 for i in range(30))


def test_a_batch_never_exceeds_the_maximum_rows() -> None:
    model = Model()
    batcher = Batcher("m", model, BatchSettings(max_batch_size=5))

    async def main() -> None:
        await asyncio.gather(*(batcher.submit(_feeds(1, rows=2), 2, None) for _ in range(20)))

    try:
        asyncio.run(main())
    finally:
        batcher.close(5)
    assert max(model.batches) <= 5


def test_other_shapes_wait_for_their_own_batch_in_order() -> None:
    model = Model()
    batcher = Batcher("m", model, BatchSettings(max_batch_size=64))

    widths = (3, 5, 7)  # three shapes: held requests of one shape sit between another's

    async def main() -> list[Feeds]:
        model.gate.clear()  # everything queues behind the first batch
        futures = [batcher.submit(_feeds(i, width=widths[i % 3]), 1, None) for i in range(18)]
        await asyncio.sleep(0.05)
        model.gate.set()
        return list(await asyncio.gather(*futures))

    try:
        results = asyncio.run(main())
    finally:
        batcher.close(5)
    for i, result in enumerate(results):
        assert result["y"].shape == (1, widths[i % 3])
        assert result["y"][0, 0] == 2 * i
    assert len(model.batches) <= 4  # one batch per shape after the first request


def test_full_queue_refuses_at_once() -> None:
    model = Model()
    model.gate.clear()  # the worker blocks on its first batch
    batcher = Batcher("m", model, BatchSettings(max_queue_size=3))

    async def main() -> None:
        first = batcher.submit(_feeds(0), 1, None)
        await asyncio.sleep(0.05)  # the worker holds it
        waiting = [batcher.submit(_feeds(i), 1, None) for i in range(3)]
        with pytest.raises(QueueFullError, match="3 requests waiting"):
            batcher.submit(_feeds(9), 1, None)
        model.gate.set()
        await asyncio.gather(first, *waiting)

    try:
        asyncio.run(main())
    finally:
        batcher.close(5)


def test_one_bad_request_fails_alone_in_a_batch() -> None:
    model = Model()
    model.gate.clear()
    batcher = Batcher("m", model, BatchSettings(max_batch_size=64))

    async def main() -> list[object]:
        futures = [batcher.submit(_feeds(-1 if i == 2 else i), 1, None) for i in range(5)]
        await asyncio.sleep(0.01)
        model.gate.set()
        return list(await asyncio.gather(*futures, return_exceptions=True))

    try:
        outcomes = asyncio.run(main())
    finally:
        batcher.close(5)
    assert isinstance(outcomes[2], InvalidInputError)
    assert all(isinstance(o, dict) for i, o in enumerate(outcomes) if i != 2)


def test_close_finishes_queued_requests_then_refuses_new_ones() -> None:
    model = Model(delay=0.05)
    batcher = Batcher("m", model, BatchSettings(enabled=False))

    async def main() -> list[Feeds]:
        futures = [batcher.submit(_feeds(i), 1, None) for i in range(4)]
        closing = asyncio.get_running_loop().run_in_executor(None, batcher.close, 10)
        results = list(await asyncio.gather(*futures))
        assert await closing
        with pytest.raises(NotReadyError):
            batcher.submit(_feeds(0), 1, None)
        return results

    results = asyncio.run(main())
    assert [r["y"][0, 0] for r in results] == [0, 2, 4, 6]
    assert model.batches == [1, 1, 1, 1]  # batching off: one request per run


def test_expired_requests_are_dropped_before_running() -> None:
    model = Model()
    model.gate.clear()
    batcher = Batcher("m", model, BatchSettings(enabled=False))

    async def main() -> object:
        first = batcher.submit(_feeds(0), 1, None)
        await asyncio.sleep(0.02)
        late = batcher.submit(_feeds(1), 1, time.monotonic() + 0.01)
        await asyncio.sleep(0.05)
        model.gate.set()
        await first
        return (await asyncio.gather(late, return_exceptions=True))[0]

    try:
        outcome = asyncio.run(main())
    finally:
        batcher.close(5)
    assert type(outcome).__name__ == "DeadlineExceededError"
    assert model.batches == [1]


def test_a_deadline_that_passes_while_the_batch_waits_for_company_drops_the_request() -> None:
    model = Model(delay=0)
    # A long wait for a fuller batch: the first request's deadline passes during it.
    batcher = Batcher("m", model, BatchSettings(max_batch_size=64, max_queue_delay_us=300_000))

    async def main() -> list[object]:
        late = batcher.submit(_feeds(1), 1, time.monotonic() + 0.02)
        await asyncio.sleep(0.05)  # past the deadline, inside the wait
        patient = batcher.submit(_feeds(2), 1, None)
        return list(await asyncio.gather(late, patient, return_exceptions=True))

    try:
        late, patient = asyncio.run(main())
    finally:
        batcher.close(5)
    assert type(late).__name__ == "DeadlineExceededError"
    assert "the request was not run" in str(late)
    assert isinstance(patient, dict)
    np.testing.assert_array_equal(patient["y"], 2 * _feeds(2)["x"])
    assert model.batches == [1]  # the patient request ran, alone


class Where:
    """y = x + 1, noting which thread ran each call: fast, or as slow as asked."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.threads: list[str] = []

    def __call__(self, feeds: Feeds) -> Feeds:
        if self.delay:
            time.sleep(self.delay)
        self.threads.append(threading.current_thread().name)
        return {"y": feeds["x"] + 1}


def _one_by_one(batcher: Batcher, count: int) -> list[Feeds]:
    async def main() -> list[Feeds]:
        return [await batcher.submit(_feeds(i), 1, None) for i in range(count)]

    try:
        return asyncio.run(main())
    finally:
        batcher.close(5)


def test_an_idle_fast_model_runs_on_the_event_loop_and_a_slow_one_never_does() -> None:
    fast, slow = Where(), Where(delay=0.005)
    records: list[BatchRecord] = []
    answers = _one_by_one(Batcher("fast", fast, BatchSettings(), records.append), 40)
    _one_by_one(Batcher("slow", slow, BatchSettings()), 4)
    # The first run is a worker's (it measures the model); later ones, the loop's own
    # thread (a run the box's load made slow sends the next few back to the worker).
    assert fast.threads[0].startswith("batcher-fast")
    assert "MainThread" in fast.threads
    assert all(t.startswith("batcher-slow") for t in slow.threads)
    np.testing.assert_array_equal(answers[39]["y"], _feeds(39)["x"] + 1)
    assert [r.requests for r in records] == [1] * 40  # counted like any batch


def test_a_queue_delay_keeps_requests_off_the_event_loop() -> None:
    model = Where()
    _one_by_one(Batcher("m", model, BatchSettings(max_queue_delay_us=1)), 3)
    assert all(t.startswith("batcher-m") for t in model.threads)
