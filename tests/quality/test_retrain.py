"""The retraining trigger's drift signal on a real daemon: the embedded breast-cancer
model (its package carries a reference profile) fed rows far from its training data."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton

from tests._daemon import DaemonProcess


def test_a_drift_alert_held_for_retrain_after_s_runs_the_command_once(tmp_path: Path) -> None:
    marker = tmp_path / "retrain-runs.txt"
    script = f"open({str(marker)!r}, 'a').write('run\\n')"
    config = {
        "lifecycle": {"audit_log": str(tmp_path / "audit.jsonl")},
        "monitoring": {"drift_min_rows": 100},
        "models": {
            "breast_cancer": {
                "retrain_command": [sys.executable, "-c", script],
                "retrain_after_s": 1.0,
            }
        },
    }
    shifted = np.random.default_rng(0).uniform(5e3, 1e4, size=(32, 30)).astype(np.float32)
    with DaemonProcess(tmp_path, config) as daemon:
        with triton.InferenceServerClient(daemon.address) as client:
            for _ in range(10):  # 320 rows, every feature far above its training range
                tensor = triton.InferInput("input", list(shifted.shape), "FP32")
                tensor.set_data_from_numpy(shifted)
                client.infer("breast_cancer", [tensor])
        deadline = time.monotonic() + 20
        while not marker.exists():
            assert time.monotonic() < deadline, daemon.log_text()[-2000:]
            time.sleep(0.2)
        time.sleep(2.5)  # the alert still holds: the cooldown (a day) keeps it to one run
        assert marker.read_text() == "run\n"
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    started = [r for r in records if r["event"] == "quality.retrain" and r["outcome"] == "started"]
    assert len(started) == 1 and "drift alert held" in started[0]["reason"]
