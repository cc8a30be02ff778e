"""The response cache: identical bytes on a hit, never another version's answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton

from appliance.default_model.build import build_graph
from tests._daemon import DaemonProcess
from tests.monitoring.conftest import scrape, value

#: Room for a few entries only: 256 bytes of bookkeeping plus one row of two floats.
CACHE_BYTES = 1024


def write_versions(root: Path, tumours: np.ndarray) -> None:
    """breast_cancer versions 1 and 2: the same features, opposite coefficients."""
    mean, std = tumours.mean(axis=0), tumours.std(axis=0) + 1e-6
    coef = np.linspace(-1, 1, tumours.shape[1])
    for version, sign in ((1, 1.0), (2, -1.0)):
        folder = root / "breast_cancer" / str(version)
        folder.mkdir(parents=True)
        onnx.save(build_graph(mean, std, sign * coef, 0.1), folder / "model.onnx")


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, tumours: np.ndarray
) -> Iterator[DaemonProcess]:
    work = tmp_path_factory.mktemp("cache")
    write_versions(work / "repository", tumours)
    config = {
        "repository": {"version_policy": "all", "serve_default_model": False},
        "models": {"breast_cancer": {"cache_bytes": CACHE_BYTES}},
    }
    with DaemonProcess(work, config) as d:
        yield d


def infer(daemon: DaemonProcess, rows: np.ndarray, version: str = "") -> bytes:
    with triton.InferenceServerClient(daemon.address) as client:
        tensor = triton.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)
        result = client.infer("breast_cancer", [tensor], model_version=version)
    return bytes(result.get_response().raw_output_contents[0])


def expected(daemon: DaemonProcess, version: int, rows: np.ndarray) -> bytes:
    path = daemon.workdir / "repository" / "breast_cancer" / str(version) / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return bytes(session.run(None, {"input": rows})[0].tobytes())


def test_hit_returns_identical_bytes(daemon: DaemonProcess, tumours: np.ndarray) -> None:
    rows = tumours[:1]
    first = infer(daemon, rows, "1")
    before = scrape(daemon)
    second = infer(daemon, rows, "1")
    after = scrape(daemon)
    assert second == first == expected(daemon, 1, rows)
    labels = {"model": "breast_cancer", "version": "1"}
    hits = (value(after, "appliance_cache_hits_total", **labels) or 0) - (
        value(before, "appliance_cache_hits_total", **labels) or 0
    )
    assert hits == 1


def test_never_answers_with_another_versions_result(
    daemon: DaemonProcess, tumours: np.ndarray
) -> None:
    rows = tumours[1:2]
    v1 = infer(daemon, rows, "1")
    v1_again = infer(daemon, rows, "1")  # now cached for version 1
    v2 = infer(daemon, rows, "2")
    unversioned = infer(daemon, rows)  # the default: the highest version
    assert v1 == v1_again == expected(daemon, 1, rows)
    assert v2 == unversioned == expected(daemon, 2, rows)
    assert v1 != v2


def test_cache_stays_within_its_bytes(daemon: DaemonProcess, tumours: np.ndarray) -> None:
    for i in range(20):
        infer(daemon, tumours[10 + i : 11 + i], "2")
    samples = scrape(daemon)
    labels = {"model": "breast_cancer", "version": "2"}
    assert 0 < (value(samples, "appliance_cache_size_bytes", **labels) or 0) <= CACHE_BYTES
    assert 1 <= (value(samples, "appliance_cache_entries", **labels) or 0) <= 3
    misses = value(samples, "appliance_cache_misses_total", **labels) or 0
    assert misses >= 20
