"""``appliance status`` shows tokens/s and time to first token of a generative model,
and ``/metrics`` carries DESIGN.md's generation metrics (no text in either)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import tritonclient.grpc as triton
from prometheus_client.parser import text_string_to_metric_families

from tests._daemon import DaemonProcess
from tests.generative._client import inputs
from tests.generative.conftest import LM


def _status(daemon: DaemonProcess, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "appliance", "status", *extra]
    command += ["--admin", str(daemon.workdir / "admin.sock")]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)


def test_status_and_metrics_show_token_figures(lm_daemon: DaemonProcess) -> None:
    with triton.InferenceServerClient(lm_daemon.address) as client:
        for _ in range(3):
            client.infer(LM, inputs("The patient", {"max_tokens": 20, "ignore_eos": True}))
    answer = _status(lm_daemon, "--json")
    assert answer.returncode == 0, answer.stderr
    (model,) = json.loads(answer.stdout)["models"]
    assert model["generative"] is True
    assert model["tokens_per_s"] > 0
    assert 0 < model["ttft_p50_ms"] <= model["ttft_p99_ms"]
    table = _status(lm_daemon)
    assert table.returncode == 0 and "tokens/s" in table.stdout and "TTFT p50 ms" in table.stdout

    url = f"http://127.0.0.1:{lm_daemon.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    found = {
        sample.name
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("model") == LM and sample.labels.get("version") == "1"
    }
    assert {
        "appliance_time_to_first_token_seconds_bucket",
        "appliance_inter_token_latency_seconds_count",
        "appliance_prompt_tokens_total",
        "appliance_generated_tokens_total",
        "appliance_active_sequences",
    } <= found
    assert "The patient" not in text
