"""Drift: PSI against the package's reference profile, over a real daemon.

The embedded breast-cancer model carries a profile of its training data. Rows sampled
from the same data must stay under the warning threshold; the same rows scaled by 1.5
(an instrument recalibrated, say) must raise the alert, logged once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as triton

from tests._daemon import DaemonProcess
from tests.monitoring.conftest import matching, scrape, value

MODEL = {"model": "breast_cancer", "version": "1"}
ROWS_PER_REQUEST = 8
CONFIG = {
    "monitoring": {"drift_min_rows": 200, "drift_window_rows": 400},
    "logging": {"format": "text", "requests": "off"},
}


@pytest.fixture
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with DaemonProcess(tmp_path_factory.mktemp("drift"), CONFIG) as d:
        yield d


def send(daemon: DaemonProcess, rows: np.ndarray) -> None:
    with triton.InferenceServerClient(daemon.address) as client:
        for start in range(0, len(rows), ROWS_PER_REQUEST):
            batch = rows[start : start + ROWS_PER_REQUEST]
            tensor = triton.InferInput("input", list(batch.shape), "FP32")
            tensor.set_data_from_numpy(batch)
            client.infer("breast_cancer", [tensor])


def status(daemon: DaemonProcess) -> dict[str, object]:
    admin = str(daemon.workdir / "admin.sock")
    out = subprocess.run(
        [sys.executable, "-m", "appliance", "status", "--admin", admin, "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    models = json.loads(out.stdout)["models"]
    return next(m for m in models if m["name"] == "breast_cancer")


def test_reference_sample_does_not_drift(daemon: DaemonProcess, tumours: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    send(daemon, tumours[rng.integers(0, len(tumours), 800)])
    samples = scrape(daemon)
    psi = matching(samples, "appliance_drift_psi", **MODEL)
    assert len(psi) == 30 + 2  # every feature, predicted class, confidence
    assert max(psi.values()) < 0.1
    assert value(samples, "appliance_drift_alert", **MODEL) == 0
    assert value(samples, "appliance_drift_rows_total", **MODEL) == 800
    assert "drift:" not in daemon.log_text()


def test_shifted_inputs_raise_the_alert_once(daemon: DaemonProcess, tumours: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    send(daemon, tumours[rng.integers(0, len(tumours), 400)])
    send(daemon, 1.5 * tumours[rng.integers(0, len(tumours), 1200)])
    samples = scrape(daemon)
    assert value(samples, "appliance_drift_alert", **MODEL) == 1
    psi = matching(samples, "appliance_drift_psi", **MODEL)
    assert max(psi.values()) > 0.5
    alerts = [line for line in daemon.log_text().splitlines() if "drift: model" in line]
    assert len(alerts) == 1, alerts
    assert "breast_cancer" in alerts[0] and "PSI" in alerts[0]

    shown = status(daemon)
    assert shown["drift_state"] == "alert"
    assert max(shown["drift_psi"].values()) > 0.5  # type: ignore[attr-defined]
    assert shown["request_rate"] > 0  # type: ignore[operator]
    assert 0 < shown["latency_p50_ms"] <= shown["latency_p99_ms"]  # type: ignore[operator]
