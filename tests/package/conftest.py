"""Fixtures for package tests: a tiny hand-built ONNX classifier and key pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from appliance.package import (
    Manifest,
    build_package,
    generate_keypair,
    make_golden,
    specs_from_onnx,
)


def _tiny_classifier(path: Path) -> Path:
    """(batch, 4) float -> (batch, 3) logits: one MatMul and an Add."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "B")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "W"], ["h"]),
            helper.make_node("Add", ["h", "B"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10  # onnx writes 14; ONNX Runtime 1.31 loads at most 13
    onnx.save(model, str(path))
    return path


@pytest.fixture
def onnx_model(tmp_path: Path) -> Path:
    return _tiny_classifier(tmp_path / "tiny.onnx")


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate_keypair(tmp_path / "keys")


@pytest.fixture
def other_keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate_keypair(tmp_path / "other-keys")


@pytest.fixture
def manifest(onnx_model: Path) -> Manifest:
    inputs, outputs = specs_from_onnx(onnx_model)
    return Manifest(
        name="tiny",
        version=3,
        inputs=inputs,
        outputs=outputs,
        labels=("a", "b", "c"),
        golden=make_golden(onnx_model),
    )


@pytest.fixture
def apkg(tmp_path: Path, onnx_model: Path, manifest: Manifest, keys: tuple[Path, Path]) -> Path:
    return build_package(onnx_model, manifest, keys[0], tmp_path / "out")
