"""Daemons shared by the serving tests: one on the embedded model, one on a repository."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton

from appliance.repository import EMBEDDED_ROOT
from tests._daemon import DaemonProcess
from tests.models import (
    affine_model,
    fixed_batch_model,
    row_sum_model,
    slow_model,
    two_input_model,
)

DEFAULT_MODEL = EMBEDDED_ROOT / "breast_cancer" / "1" / "model.onnx"


@pytest.fixture(scope="session")
def default_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """The daemon as an operator first meets it: an empty repository, the embedded model."""
    with DaemonProcess(tmp_path_factory.mktemp("default")) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def repo_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """A Triton-style repository with several models and versions."""
    work = tmp_path_factory.mktemp("repo")
    build_repository(work / "repository")
    config = {
        # The protocol tests load and unload models over V2.
        "server": {"repository_control": True},
        "repository": {"version_policy": "all"},
        "models": {
            # A short wait for company, so a burst batches even when the box is busy
            # (without it, batching depends on requests queueing behind a running one).
            "echo": {"max_queue_delay_us": 20_000},
            # Half a second for company before each batch runs: while it waits, other
            # requests queue (a short deadline passes, a small queue fills) however busy
            # the box is and in whatever order they arrive.
            "delayed": {"max_queue_delay_us": 500_000, "max_queue_size": 2},
        },
    }
    with DaemonProcess(work, config) as daemon:
        yield daemon


def build_repository(root: Path) -> None:
    affine_model(root / "affine" / "1" / "model.onnx", scale=2.0)
    affine_model(root / "affine" / "2" / "model.onnx", scale=3.0)
    slow_model(root / "echo" / "1" / "model.onnx", depth=16)
    row_sum_model(root / "delayed" / "1" / "model.onnx")
    two_input_model(root / "tokens" / "1" / "model.onnx")
    fixed_batch_model(root / "fixed" / "1" / "model.onnx")
    # Not a version folder: ignored.
    (root / "affine" / "notes").mkdir()


@pytest.fixture(scope="session")
def tls_repo_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """The repository daemon behind mutual TLS, for fuzzing through the TLS layer."""
    from tests.box.conftest import Authority

    work = tmp_path_factory.mktemp("tls-repo")
    build_repository(work / "repository")
    ca = Authority(work, "fuzz-ca")
    server = ca.issue("appliance", server=True, file="server")
    client = ca.issue("fuzzer", file="client")
    config = {
        "server": {"tls": {"cert": server.cert, "key": server.key, "client_ca": ca.cert_path}}
    }
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.cert_path.read_bytes(),
        private_key=client.key.read_bytes(),
        certificate_chain=client.cert.read_bytes(),
    )
    with DaemonProcess(work, config, credentials=credentials) as daemon:
        yield daemon


@pytest.fixture
def client(default_daemon: DaemonProcess) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(default_daemon.address) as c:
        yield c


@pytest.fixture
def repo_client(repo_daemon: DaemonProcess) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(repo_daemon.address) as c:
        yield c


def tumours(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Real rows from the Wisconsin diagnostic data (bundled with scikit-learn) and their
    labels: (n, 30) FP32 features, (n,) class indices (0 malignant, 1 benign)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(data.target), size=n, replace=False)
    return data.data[chosen].astype(np.float32), data.target[chosen]


def tumour_rows(n: int, seed: int = 0) -> np.ndarray:
    """The features of ``tumours(n, seed)``."""
    return tumours(n, seed)[0]


def infer_input(name: str, array: np.ndarray, datatype: str) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor
