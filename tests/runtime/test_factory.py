"""The one session factory: it opens what ONNX Runtime can load, and turns what it cannot
into the caller's error class, naming the file and ONNX Runtime's reason."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from appliance.errors import ModelLoadError, PackageError
from appliance.runtime import open_session
from appliance.runtime._probe_model import identity_model_bytes
from tests.models import affine_model

ROOT = Path(__file__).resolve().parents[2]


def test_a_file_opens_on_the_cpu_and_runs(tmp_path: Path) -> None:
    session = open_session(affine_model(tmp_path / "m.onnx", scale=3.0), ModelLoadError)
    assert session.get_providers() == ["CPUExecutionProvider"]
    (y,) = session.run(None, {"x": np.ones((2, 4), np.float32)})
    np.testing.assert_array_equal(y, np.full((2, 4), 4.0, np.float32))


def test_serialized_bytes_open_too() -> None:
    session = open_session(identity_model_bytes(), ModelLoadError)
    (y,) = session.run(None, {"x": np.array([[-1, 0, 1, 2]], np.float32)})
    assert y.tolist() == [[0, 0, 1, 2]]


@pytest.mark.parametrize("error", [ModelLoadError, PackageError, RuntimeError])
def test_a_model_that_does_not_load_raises_the_callers_error(
    tmp_path: Path, error: type[Exception]
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    with pytest.raises(error) as caught:
        open_session(broken, error)
    assert type(caught.value) is error
    assert str(caught.value).startswith(f"{broken}: ONNX Runtime could not load the model: ")
    assert caught.value.__cause__ is not None  # ONNX Runtime's own exception, kept


def test_bytes_that_do_not_load_are_named_as_in_memory() -> None:
    with pytest.raises(ModelLoadError, match=r"^in-memory model: ONNX Runtime could not load"):
        open_session(b"\x00\x01", ModelLoadError)


def test_the_optimised_graph_is_saved_where_asked(tmp_path: Path) -> None:
    out = tmp_path / "optimised.onnx"
    open_session(
        affine_model(tmp_path / "m.onnx"),
        ModelLoadError,
        optimization=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        optimized_model_path=out,
    )
    onnx.checker.check_model(onnx.load(str(out)))


def test_no_other_module_builds_an_inference_session() -> None:
    """The factory stays the one place (benchmarks and tests may open their own)."""
    pattern = re.compile(r"^(?!\s*#).*\bInferenceSession\(", re.MULTILINE)  # code, not comments
    found = [
        str(path.relative_to(ROOT))
        for package in ("appliance", "compress", "federated")
        for path in sorted((ROOT / package).rglob("*.py"))
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert found == ["appliance/runtime/factory.py"]
