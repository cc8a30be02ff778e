"""Metrics appear on ``/metrics`` and move as requests flow through a real daemon."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from tests._daemon import DaemonProcess
from tests.monitoring.conftest import matching, scrape, value

MODEL = {"model": "breast_cancer", "version": "1"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with DaemonProcess(tmp_path_factory.mktemp("metrics")) as d:
        yield d


def infer(
    client: triton.InferenceServerClient, rows: np.ndarray, model: str = "breast_cancer"
) -> None:
    tensor = triton.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    client.infer(model, [tensor])


def test_requests_latency_and_batches_are_counted(
    daemon: DaemonProcess, tumours: np.ndarray
) -> None:
    before = scrape(daemon)
    ok_before = value(before, "appliance_requests_total", code="OK", **MODEL) or 0.0
    with triton.InferenceServerClient(daemon.address) as client:
        for i in range(20):
            infer(client, tumours[i : i + 3])
    after = scrape(daemon)
    assert value(after, "appliance_requests_total", code="OK", **MODEL) == ok_before + 20
    for name in ("appliance_request_duration_seconds", "appliance_queue_duration_seconds"):
        count = value(after, f"{name}_count", **MODEL)
        assert count is not None and count >= ok_before + 20
        assert value(after, f"{name}_bucket", le="+Inf", **MODEL) == count
        assert (value(after, f"{name}_sum", **MODEL) or 0.0) > 0
    # 20 requests of 3 rows: at least 60 rows ran, in at most 20 session runs.
    rows = value(after, "appliance_batch_size_rows_sum", **MODEL)
    runs = value(after, "appliance_compute_duration_seconds_count", **MODEL)
    assert rows is not None and rows >= 60
    assert runs is not None and 1 <= runs <= rows / 3


def test_errors_are_counted_by_status_code(daemon: DaemonProcess, tumours: np.ndarray) -> None:
    with triton.InferenceServerClient(daemon.address) as client:
        with pytest.raises(InferenceServerException):
            bad = triton.InferInput("input", [1, 29], "FP32")
            bad.set_data_from_numpy(tumours[:1, :29])
            client.infer("breast_cancer", [bad])
        for name in ("no_such_model", "another_made_up_name"):
            with pytest.raises(InferenceServerException):
                infer(client, tumours[:1], model=name)
    samples = scrape(daemon)
    invalid = value(samples, "appliance_requests_total", code="INVALID_ARGUMENT", **MODEL)
    assert invalid == 1
    # Names clients make up share one label value: the series stay bounded.
    unknown = matching(samples, "appliance_requests_total", model="_unknown")
    assert list(unknown.values()) == [2.0]
    assert not matching(samples, "appliance_requests_total", model="no_such_model")


def test_model_state_queue_and_process_gauges(daemon: DaemonProcess) -> None:
    samples = scrape(daemon)
    assert value(samples, "appliance_model_state", state="READY", **MODEL) == 1
    assert value(samples, "appliance_model_state", state="FAILED", **MODEL) == 0
    assert value(samples, "appliance_models_loaded") == 1
    assert value(samples, "appliance_queue_depth", **MODEL) == 0
    assert (value(samples, "appliance_process_resident_memory_bytes") or 0) > 10 * 2**20
    assert (value(samples, "appliance_process_cpu_seconds_total") or 0) > 0
    # No NVIDIA GPU on the test box: no GPU series at all, rather than zeros.
    if not matching(samples, "appliance_gpu_memory_total_bytes"):
        assert not [k for k in samples if k[0].startswith("appliance_gpu_")]


def test_metrics_can_be_turned_off(tmp_path_factory: pytest.TempPathFactory) -> None:
    config = {"monitoring": {"enabled": False}}
    with DaemonProcess(tmp_path_factory.mktemp("off"), config) as d, pytest.raises(OSError):
        scrape(d)
