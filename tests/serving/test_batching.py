"""Dynamic batching through the real daemon: merged, split back exactly, bounded, and
deadlines honoured."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from tritonclient.utils import InferenceServerException

from tests._daemon import DaemonProcess
from tests.serving.conftest import DEFAULT_MODEL, infer_input, tumour_rows


async def _infer_all(address: str, model: str, batches: list[list[triton.InferInput]]) -> list:
    async with triton_aio.InferenceServerClient(address) as client:
        return await asyncio.gather(*(client.infer(model, inputs) for inputs in batches))


def test_batched_rows_equal_what_the_model_gives_each_alone(
    default_daemon: DaemonProcess,
) -> None:
    rng = np.random.default_rng(7)
    requests = [tumour_rows(int(rng.integers(1, 5)), seed=i) for i in range(64)]
    inputs = [[infer_input("input", x, "FP32")] for x in requests]
    results = asyncio.run(_infer_all(default_daemon.address, "breast_cancer", inputs))
    session = ort.InferenceSession(str(DEFAULT_MODEL))
    for x, result in zip(requests, results, strict=True):
        alone = session.run(None, {"input": x})[0]
        np.testing.assert_allclose(result.as_numpy("probabilities"), alone, rtol=1e-5, atol=1e-6)


def test_concurrent_requests_are_merged_into_batches(repo_daemon: DaemonProcess) -> None:
    rows = [np.full((1, 256), float(i), np.float32) for i in range(48)]
    inputs = [[infer_input("x", x, "FP32")] for x in rows]
    with triton.InferenceServerClient(repo_daemon.address) as client:
        before = client.get_inference_statistics("echo").model_stats[0]
        results = asyncio.run(_infer_all(repo_daemon.address, "echo", inputs))
        after = client.get_inference_statistics("echo").model_stats[0]
    # The echo model is an identity: each caller gets exactly its own row back.
    for x, result in zip(rows, results, strict=True):
        np.testing.assert_array_equal(result.as_numpy("y"), x)
    runs = after.execution_count - before.execution_count
    assert after.inference_count - before.inference_count == 48
    assert runs < 48, "no request was batched with another"
    assert max(s.batch_size for s in after.batch_stats) > 1


def test_requests_of_different_shapes_are_not_mixed(repo_daemon: DaemonProcess) -> None:
    lengths = [3, 5, 3, 8, 5, 3, 1, 8] * 4
    batches = []
    for i, length in enumerate(lengths):
        ids = np.arange(length, dtype=np.int64)[None, :] + i
        mask = np.ones_like(ids)
        batches.append([infer_input("ids", ids, "INT64"), infer_input("mask", mask, "INT64")])
    results = asyncio.run(_infer_all(repo_daemon.address, "tokens", batches))
    for i, (length, result) in enumerate(zip(lengths, results, strict=True)):
        expected = sum(range(length)) + i * length
        assert result.as_numpy("total").tolist() == [[expected]]


async def _infer_outcomes(
    address: str, model: str, batches: list[list[triton.InferInput]]
) -> list[object]:
    async with triton_aio.InferenceServerClient(address) as client:
        calls = (client.infer(model, inputs) for inputs in batches)
        return list(await asyncio.gather(*calls, return_exceptions=True))


def test_full_queue_refuses_at_once_with_resource_exhausted(repo_daemon: DaemonProcess) -> None:
    # Six widths, so no two share a batch: the first waits 0.5 s for company while the
    # others queue behind it, and a queue of 2 must refuse some of them.
    widths = range(1, 7)
    inputs = [[infer_input("x", np.ones((1, w), np.float32), "FP32")] for w in widths]
    started = time.monotonic()
    outcomes = asyncio.run(_infer_outcomes(repo_daemon.address, "delayed", inputs))
    refused = [o for o in outcomes if isinstance(o, InferenceServerException)]
    answered = [
        (w, o) for w, o in zip(widths, outcomes, strict=True) if isinstance(o, triton.InferResult)
    ]
    assert refused, "a queue of 2 took 6 requests"
    assert len(answered) >= 2  # what fit in the queue ran
    for err in refused:
        assert err.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert "queue of model 'delayed:1' is full (2 requests waiting)" in err.message()
    for width, result in answered:
        assert result.as_numpy("total").tolist() == [[float(width)]]
    assert time.monotonic() - started < 30


def test_request_whose_deadline_passed_is_dropped_before_it_runs(
    repo_daemon: DaemonProcess,
) -> None:
    # The "delayed" model waits 0.5 s for company before it runs a batch, so a request
    # with a 50 ms deadline is still queued when the deadline passes, whatever the box's
    # load and whichever request reaches the server first. (Holding the worker busy with
    # a big request instead raced: on a loaded box the small one could arrive first and
    # be answered, or join the big one's batch.)
    late_x = np.full((1, 4), 5.0, np.float32)
    patient_x = np.full((1, 4), 7.0, np.float32)

    async def late_then_patient() -> tuple[object, object]:
        async with triton_aio.InferenceServerClient(repo_daemon.address) as client:
            late = client.infer("delayed", [infer_input("x", late_x, "FP32")], client_timeout=0.05)
            (outcome,) = await asyncio.gather(late, return_exceptions=True)
            # Sent once the first has timed out: it shares that one's batch (or runs
            # after it), so its answer means the expired request's fate is settled.
            patient = await client.infer("delayed", [infer_input("x", patient_x, "FP32")])
        return outcome, patient

    with triton.InferenceServerClient(repo_daemon.address) as client:
        before = client.get_inference_statistics("delayed").model_stats[0]
        outcome, patient = asyncio.run(late_then_patient())
        after = client.get_inference_statistics("delayed").model_stats[0]
    assert isinstance(outcome, InferenceServerException)
    assert outcome.status() == "StatusCode.DEADLINE_EXCEEDED"
    assert isinstance(patient, triton.InferResult)
    assert patient.as_numpy("total").tolist() == [[28.0]]
    # Only the patient request ran: the expired one never reached the session.
    assert after.inference_count - before.inference_count == 1


@pytest.mark.parametrize("delay_us", [20_000])
def test_queue_delay_waits_for_a_fuller_batch(tmp_path: object, delay_us: int) -> None:
    from pathlib import Path

    work = Path(str(tmp_path))
    config = {"batching": {"max_queue_delay_us": delay_us, "max_batch_size": 8}}
    with DaemonProcess(work, config) as daemon:
        x = tumour_rows(1)
        inputs = [[infer_input("input", x, "FP32")] for _ in range(8)]

        async def staggered() -> None:
            async with triton_aio.InferenceServerClient(daemon.address) as client:
                calls = []
                for item in inputs:
                    calls.append(asyncio.ensure_future(client.infer("breast_cancer", item)))
                    await asyncio.sleep(0.001)
                await asyncio.gather(*calls)

        asyncio.run(staggered())
        with triton.InferenceServerClient(daemon.address) as client:
            stats = client.get_inference_statistics("breast_cancer").model_stats[0]
    # Arrivals 1 ms apart inside a 20 ms window form few, full batches.
    assert stats.execution_count < 8
    assert max(s.batch_size for s in stats.batch_stats) >= 4
