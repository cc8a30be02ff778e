"""The embedded clinical language model: shipped as its build script says, served by a
daemon started with no repository of its own, streamed by ``appliance demo``."""

from __future__ import annotations

import fnmatch
import queue
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton

from appliance.default_model.build import LM_NAME, LM_OUT, lm_spec
from appliance.package import read_manifest
from appliance.package.generative import check_genai_config
from appliance.repository import EMBEDDED_ROOT
from tests._daemon import DaemonProcess, daemon_environment

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "Patient reports"


def _golden_text(prompt: str) -> str:
    """The recorded greedy continuation of ``prompt``, decoded as a stream decodes it."""
    import onnxruntime_genai as og

    golden = read_manifest(LM_OUT).generation_golden
    assert golden is not None
    (case,) = [c for c in golden.cases if c.prompt == prompt]
    stream = og.Tokenizer(og.Model(str(LM_OUT))).create_stream()
    return "".join(stream.decode(t) for t in case.token_ids)


def test_the_shipped_model_is_the_one_its_script_builds() -> None:
    manifest = read_manifest(LM_OUT)
    assert manifest.name == LM_NAME and manifest.task == "text-generation"
    assert manifest.provenance.recipe is not None
    assert manifest.provenance.recipe["spec"] == lm_spec().recorded()
    assert manifest.generation_golden is not None
    check_genai_config(LM_OUT, flat=True)
    size = sum(p.stat().st_size for p in LM_OUT.iterdir())
    assert size < 10 * 1024**2, f"{size} bytes: the embedded model should stay a few MB"


def test_every_embedded_file_is_package_data() -> None:
    """pyproject's package-data globs take every file of the embedded models into the
    wheel (a file they miss would be absent from an installed box)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["appliance"]
    package = ROOT / "appliance"
    shipped = [
        p.relative_to(package).as_posix()
        for p in EMBEDDED_ROOT.glob("*/*/*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert any(name.endswith("model.onnx.data") for name in shipped)
    missed = [n for n in shipped if not any(fnmatch.fnmatch(n, pat) for pat in patterns)]
    assert missed == []


def _stream(address: str, prompt: str, max_tokens: int) -> tuple[str, set[str]]:
    events: queue.Queue[tuple[Any, Any]] = queue.Queue()
    text = triton.InferInput("text_input", [1], "BYTES")
    text.set_data_from_numpy(np.array([prompt.encode()], dtype=np.object_))
    sampling = triton.InferInput("sampling_parameters", [1], "BYTES")
    options = f'{{"max_tokens": {max_tokens}, "temperature": 0}}'
    sampling.set_data_from_numpy(np.array([options.encode()], dtype=np.object_))
    stream = triton.InferInput("stream", [1], "BOOL")
    stream.set_data_from_numpy(np.array([True]))
    pieces, versions = [], set()
    with triton.InferenceServerClient(address) as client:
        client.start_stream(callback=lambda result, error: events.put((result, error)))
        client.async_stream_infer(
            LM_NAME, [text, sampling, stream], enable_empty_final_response=True
        )
        while True:
            result, error = events.get(timeout=60)
            assert error is None, error
            response = result.get_response()
            versions.add(response.model_version)
            out = result.as_numpy("text_output")
            if out is not None and out.size:
                pieces.append(out.reshape(-1)[0].decode())
            if response.parameters["triton_final_response"].bool_param:
                break
        client.stop_stream()
    return "".join(pieces), versions


def test_a_daemon_with_no_models_of_its_own_serves_the_lm_beside_breast_cancer(
    tmp_path: Path,
) -> None:
    with DaemonProcess(tmp_path, {}) as daemon:
        with triton.InferenceServerClient(daemon.address) as client:
            index = {m.name: m.state for m in client.get_model_repository_index().models}
            assert index == {"breast_cancer": "READY", LM_NAME: "READY"}
            meta = client.get_model_metadata(LM_NAME)
            assert [t.name for t in meta.inputs][:3] == [
                "text_input",
                "stream",
                "sampling_parameters",
            ]
        text, versions = _stream(daemon.address, PROMPT, 16)
    assert versions == {"1"}
    assert text == _golden_text(PROMPT)


@pytest.mark.timeout(300)
def test_demo_prints_a_streamed_completion() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "demo"],
        capture_output=True,
        text=True,
        timeout=240,
        env=daemon_environment({"COLUMNS": "400"}),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"{LM_NAME} streaming over ModelStreamInfer" in result.stdout
    assert f"{PROMPT}{_golden_text(PROMPT)}" in result.stdout
