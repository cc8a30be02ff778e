"""Generations that end early: a cancelled stream frees its sequence (the active-sequences
gauge returns to 0, far fewer tokens than asked are made), a full engine refuses at once
with RESOURCE_EXHAUSTED, and SIGTERM lets in-flight generations finish before the exit."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as triton
from prometheus_client.parser import text_string_to_metric_families

from tests._daemon import DaemonProcess
from tests.generative._client import Stream, inputs
from tests.generative.conftest import LM, MAX_QUEUE

#: Long generations: the tiny model would stop after a sentence without ignore_eos.
LONG = {"max_tokens": 240, "ignore_eos": True}


def metric(daemon: DaemonProcess, name: str) -> float:
    url = f"http://127.0.0.1:{daemon.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("model") == LM:
                return float(sample.value)
    raise AssertionError(f"no {name} for model {LM}")


def settled(daemon: DaemonProcess, name: str, want: float, timeout: float = 10.0) -> float:
    deadline = time.monotonic() + timeout
    while (got := metric(daemon, name)) != want and time.monotonic() < deadline:
        time.sleep(0.02)
    return got


@pytest.fixture(scope="module")
def client(lm_daemon: DaemonProcess) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(lm_daemon.address) as c:
        yield c


def test_ignore_eos_generates_max_tokens(client: triton.InferenceServerClient) -> None:
    result = client.infer(
        LM,
        inputs(
            "The patient", {"max_tokens": 30, "ignore_eos": True}, return_num_output_tokens=True
        ),
    )
    assert result.as_numpy("num_output_tokens")[0] == 30


def test_a_cancelled_stream_frees_its_sequence(
    client: triton.InferenceServerClient, lm_daemon: DaemonProcess
) -> None:
    before = metric(lm_daemon, "appliance_generated_tokens_total")
    pieces = threading.Event()
    client.start_stream(callback=lambda result, error: pieces.set())
    client.async_stream_infer(LM, inputs("The patient", LONG, stream=True), request_id="c")
    assert pieces.wait(30)
    client.stop_stream(cancel_requests=True)
    assert settled(lm_daemon, "appliance_active_sequences", 0.0) == 0.0
    made = metric(lm_daemon, "appliance_generated_tokens_total") - before
    assert 0 < made < LONG["max_tokens"], made


def test_a_full_engine_refuses_at_once(client: triton.InferenceServerClient) -> None:
    capacity = 4 + MAX_QUEUE  # the CPU engine's batch plus the configured queue
    ids = [str(i) for i in range(capacity + 8)]
    with Stream(client) as stream:
        for request_id in ids:
            stream.send(request_id, inputs("The patient", LONG, stream=True))
        answers = stream.collect(ids, timeout=120)
        refused = stream.errors
    assert refused and all("RESOURCE_EXHAUSTED" in e for e in refused)
    finished = [a for a in answers.values() if a.done]
    assert len(finished) == len(ids) - len(refused) >= capacity


def test_sigterm_lets_in_flight_generations_finish(tmp_path: Path, lm_repository: Path) -> None:
    config = {"repository": {"path": lm_repository, "serve_default_model": False}}
    daemon = DaemonProcess(tmp_path, config).start()
    try:
        with triton.InferenceServerClient(daemon.address) as client, Stream(client) as stream:
            ids = [f"s{i}" for i in range(6)]
            for request_id in ids:
                stream.send(
                    request_id,
                    inputs("The patient", LONG, stream=True, return_num_output_tokens=True),
                )
            time.sleep(0.2)
            daemon.process.send_signal(15)  # SIGTERM mid-generation
            answers = stream.collect(ids, timeout=120)
        assert all(not a.error for a in answers.values()), answers
        for answer in answers.values():
            made = sum(int(o["num_output_tokens"][0]) for o in answer.outputs if o)
            assert made == LONG["max_tokens"] and answer.finals[-1]
        assert daemon.process.wait(60) == 0
    finally:
        daemon.stop()
    assert "draining" in daemon.log_text()
