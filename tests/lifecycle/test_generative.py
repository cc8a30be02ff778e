"""Generative versions through the lifecycle, end to end: push, self-test, activate,
rollback, drain on a switch, and SIGTERM during a generation, with the admin CLI and
tritonclient's streaming API against a real daemon."""

from __future__ import annotations

import queue
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton

from appliance.package import (
    TEXT_GENERATION,
    GenerationCase,
    GenerationGolden,
    Manifest,
    build_generative_package,
    generate_keypair,
    make_generation_golden,
)
from appliance.package.generative import GENERATIVE_INPUTS, GENERATIVE_OUTPUTS
from compress.lm import LlamaSpec
from tests._daemon import DaemonProcess
from tests._lm import genai_model
from tests.generative.conftest import greedy
from tests.lifecycle.conftest import audit_lines, cli, cli_json, member, rewrite_package

MODEL = "notes"
PROMPT = "Patient reports"
REFUSED = 3
#: Random weights of the tiny shape with a long context: greedy decoding never meets the
#: end-of-sequence token, so a generation runs to its max_tokens, seconds of them, long
#: enough to be caught in flight.
RAMBLER = LlamaSpec(steps=0)
LONG = 200


class GenerativePackages:
    """Signed ``notes`` packages of one tiny generative folder, built once per session."""

    def __init__(self, root: Path, folder: Path):
        self.root = root
        self.folder = folder
        self.private, self.public = generate_keypair(root / "keys")
        self.golden = make_generation_golden(folder, (PROMPT, "History of"), 8)

    def build(self, version: int, *, bad_golden: bool = False) -> Path:
        golden = _shifted(self.golden) if bad_golden else self.golden
        manifest = Manifest(
            name=MODEL,
            version=version,
            task=TEXT_GENERATION,
            inputs=GENERATIVE_INPUTS,
            outputs=GENERATIVE_OUTPUTS,
            max_batch_size=0,
            generation_golden=golden,
        )
        out = self.root / ("bad" if bad_golden else "good") / f"{MODEL}-{version}.apkg"
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.is_file():
            return out
        return build_generative_package(self.folder, manifest, self.private, out)


def _shifted(golden: GenerationGolden) -> GenerationGolden:
    """The same prompts with every expected token id moved by one: no box matches them."""
    return GenerationGolden(
        cases=[
            GenerationCase(
                prompt=c.prompt,
                max_tokens=c.max_tokens,
                token_ids=tuple(t + 1 for t in c.token_ids),
            )
            for c in golden.cases
        ]
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> GenerativePackages:
    return GenerativePackages(tmp_path_factory.mktemp("gen-packages"), genai_model())


@pytest.fixture(scope="module")
def rambling(tmp_path_factory: pytest.TempPathFactory) -> GenerativePackages:
    return GenerativePackages(tmp_path_factory.mktemp("gen-rambling"), genai_model(RAMBLER))


def _config(packages: GenerativePackages, workdir: Path, grace: float = 10.0) -> dict[str, Any]:
    return {
        "server": {"grace_period_s": grace},
        "repository": {"serve_default_model": False},
        "signing": {"trusted_keys": [str(packages.public)]},
        "lifecycle": {"audit_log": str(workdir / "audit.jsonl")},
    }


@pytest.fixture
def daemon(trained: GenerativePackages, tmp_path: Path) -> Iterator[DaemonProcess]:
    with DaemonProcess(tmp_path, _config(trained, tmp_path)) as d:
        yield d


# ------------------------------------------------------------------------- the client


def _inputs(prompt: str, max_tokens: int) -> list[triton.InferInput]:
    text = triton.InferInput("text_input", [1], "BYTES")
    text.set_data_from_numpy(np.array([prompt.encode()], dtype=np.object_))
    sampling = triton.InferInput("sampling_parameters", [1], "BYTES")
    options = f'{{"max_tokens": {max_tokens}, "temperature": 0}}'
    sampling.set_data_from_numpy(np.array([options.encode()], dtype=np.object_))
    stream = triton.InferInput("stream", [1], "BOOL")
    stream.set_data_from_numpy(np.array([True]))
    finish = triton.InferInput("return_finish_reason", [1], "BOOL")
    finish.set_data_from_numpy(np.array([True]))
    return [text, sampling, stream, finish]


@dataclass
class Streamed:
    """The responses of one streamed generation."""

    pieces: list[str] = field(default_factory=list)
    versions: set[str] = field(default_factory=set)
    finish_reason: str = ""
    error: str = ""

    @property
    def text(self) -> str:
        return "".join(self.pieces)


class Generation:
    """One streamed request on its own stream: ``start``, then ``first`` or ``finish``."""

    def __init__(self, address: str, prompt: str, max_tokens: int):
        self._client = triton.InferenceServerClient(address)
        self._events: queue.Queue[tuple[Any, Any]] = queue.Queue()
        self.final_at = 0.0  # when the last response arrived (time.monotonic)
        self._client.start_stream(callback=self._arrived)
        self._client.async_stream_infer(
            MODEL,
            _inputs(prompt, max_tokens),
            request_id="1",
            enable_empty_final_response=True,
        )
        self.result = Streamed()

    def _arrived(self, result: Any, error: Any) -> None:
        final = error is not None or bool(
            result.get_response().parameters["triton_final_response"].bool_param
        )
        if final:
            self.final_at = time.monotonic()
        self._events.put((result, error))

    def _take(self, timeout: float) -> bool:
        """One response; True when it was the last."""
        result, error = self._events.get(timeout=timeout)
        if error is not None:
            self.result.error = str(error)
            return True
        response = result.get_response()
        self.result.versions.add(response.model_version)
        text = result.as_numpy("text_output")
        if text is not None and text.size:
            self.result.pieces.append(text.reshape(-1)[0].decode())
        reason = result.as_numpy("finish_reason")
        if reason is not None and reason.size:
            self.result.finish_reason = reason.reshape(-1)[0].decode()
        return bool(response.parameters["triton_final_response"].bool_param)

    def first(self, timeout: float = 60.0) -> None:
        """Wait for the first generated piece: the generation is in flight."""
        while not self.result.pieces and not self.result.error:
            if self._take(timeout):
                return

    def finish(self, timeout: float = 120.0) -> Streamed:
        while not self._take(timeout):
            pass
        self._client.stop_stream()
        self._client.close()
        return self.result


def streamed(daemon: DaemonProcess, prompt: str = PROMPT, max_tokens: int = 8) -> Streamed:
    return Generation(daemon.address, prompt, max_tokens).finish()


# ---------------------------------------------------------------------------- tests


def test_push_activate_and_rollback_a_generative_model(
    daemon: DaemonProcess, trained: GenerativePackages
) -> None:
    pushed = cli_json(daemon, "models", "push", str(trained.build(1)), "--activate")
    assert pushed["activated"] is True
    first = streamed(daemon)
    assert first.error == "" and first.versions == {"1"}
    assert first.text == greedy(trained.folder, PROMPT, 8)  # the in-process reference
    assert first.finish_reason in ("stop", "length")

    cli_json(daemon, "models", "push", str(trained.build(2)), "--activate")
    assert streamed(daemon).versions == {"2"}
    (listing,) = cli_json(daemon, "models", "list", MODEL)
    assert listing["active_version"] == "2" and listing["rollback_versions"] == ["1"]

    back = cli_json(daemon, "models", "rollback", MODEL)
    assert back["version"] == "1" and back["previous_version"] == "2"
    again = streamed(daemon)
    assert again.versions == {"1"} and again.text == first.text
    events = [(e["event"], e["outcome"]) for e in audit_lines(daemon)]
    assert ("admin.push", "ok") in events and ("admin.rollback", "ok") in events
    assert "passed its self-test (2 golden cases" in daemon.log_text()


def test_a_generative_package_failing_its_golden_prompts_is_not_installed(
    daemon: DaemonProcess, trained: GenerativePackages
) -> None:
    refused = cli(daemon, "models", "push", str(trained.build(1, bad_golden=True)), "--activate")
    assert refused.returncode == REFUSED
    assert "golden prompt 0" in refused.stderr and "generates something else" in refused.stderr
    assert not (daemon.workdir / "repository" / MODEL / "1").exists()
    assert PROMPT not in daemon.log_text()  # golden prompts are text: never logged
    push = [e for e in audit_lines(daemon) if e["event"] == "admin.push"][-1]
    assert push["outcome"] != "ok"


def test_changed_weights_are_refused_at_push(
    daemon: DaemonProcess, trained: GenerativePackages, tmp_path: Path
) -> None:
    good = trained.build(1)
    weights = bytearray(member(good, "model.onnx.data"))
    weights[64] ^= 0xFF
    tampered = rewrite_package(good, tmp_path / "t.apkg", {"model.onnx.data": bytes(weights)})
    refused = cli(daemon, "models", "push", str(tampered), "--activate")
    assert refused.returncode == REFUSED
    assert "tampered" in refused.stderr and "model.onnx.data" in refused.stderr


def test_a_switch_lets_the_running_generation_finish_on_the_old_version(
    rambling: GenerativePackages, tmp_path: Path
) -> None:
    with DaemonProcess(tmp_path, _config(rambling, tmp_path, grace=120.0)) as daemon:
        cli_json(daemon, "models", "push", str(rambling.build(1)), "--activate")
        cli_json(daemon, "models", "push", str(rambling.build(2)))
        running = Generation(daemon.address, PROMPT, LONG)
        running.first()
        with ThreadPoolExecutor(max_workers=1) as pool:
            switching = pool.submit(cli_json, daemon, "models", "activate", MODEL, "2")
            while streamed(daemon, max_tokens=1).versions != {"2"}:
                assert not switching.done() or switching.result()
            assert switching.result()["previous_version"] == "1"
        old = running.finish()
    assert old.error == "" and old.versions == {"1"}
    assert old.finish_reason == "length"


def test_sigterm_lets_a_running_generation_finish_within_the_grace_period(
    rambling: GenerativePackages, tmp_path: Path
) -> None:
    daemon = DaemonProcess(tmp_path, _config(rambling, tmp_path, grace=120.0)).start()
    try:
        cli_json(daemon, "models", "push", str(rambling.build(1)), "--activate")
        running = Generation(daemon.address, PROMPT, LONG)
        running.first()
        started = time.monotonic()
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGTERM)
        done = running.finish()
        code = daemon.process.wait(timeout=60)
    finally:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.stop()
    assert done.error == "" and done.finish_reason == "length"
    assert code == 0 and time.monotonic() - started < 120.0


def test_sigterm_cancels_a_generation_that_outlives_the_grace_period(
    rambling: GenerativePackages, tmp_path: Path
) -> None:
    daemon = DaemonProcess(tmp_path, _config(rambling, tmp_path, grace=0.0)).start()
    try:
        cli_json(daemon, "models", "push", str(rambling.build(1)), "--activate")
        running = Generation(daemon.address, PROMPT, LONG)
        running.first()
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGTERM)
        done = running.finish()
        code = daemon.process.wait(timeout=60)
    finally:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.stop()
    assert code == 0
    assert done.error or done.finish_reason == "cancelled"
