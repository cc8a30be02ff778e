"""Small ONNX models built in tests, with onnx.helper (IR 10 for ONNX Runtime 1.31)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def affine_model(path: Path, scale: float = 2.0, features: int = 4) -> Path:
    """y = scale * x + 1, x (batch, features) FP32; output name ``y``."""
    inits = [
        numpy_helper.from_array(np.array(scale, dtype=np.float32), "scale"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
    ]
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "one"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", features])],
        initializer=inits,
    )
    return _save(graph, path)


def slow_model(path: Path, width: int = 256, depth: int = 64) -> Path:
    """``depth`` chained MatMuls with a (width, width) identity: cost grows with rows.

    x (batch, width) FP32 -> y (batch, width), y == x. Lets tests hold a worker busy for
    a predictable while (a few ms per row on a small CPU).
    """
    inits = [numpy_helper.from_array(np.eye(width, dtype=np.float32), "w")]
    nodes = []
    current = "x"
    for i in range(depth):
        out = "y" if i == depth - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [current, "w"], [out]))
        current = out
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        initializer=inits,
    )
    return _save(graph, path)


def two_input_model(path: Path) -> Path:
    """ids (batch, seq) INT64 and mask (batch, seq) INT64 -> total (batch, 1) INT64.

    Shaped like a tokenizer's output, to exercise multi-input validation and batching of
    requests with different sequence lengths.
    """
    nodes = [
        helper.make_node("Mul", ["ids", "mask"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "axes"], ["total"], keepdims=1),
    ]
    graph = helper.make_graph(
        nodes,
        "two_input",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("total", TensorProto.INT64, ["batch", 1])],
        initializer=[numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    return _save(graph, path)


def fixed_batch_model(path: Path) -> Path:
    """x (3, 2) FP32 -> y (3, 2): no dynamic batch axis, so never batched."""
    graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])],
    )
    return _save(graph, path)


def embedding_model(path: Path, vocab: int = 10, dim: int = 4) -> Path:
    """ids (batch, seq) INT64 -> vectors (batch, seq, dim) FP32: a Gather, as a text
    model's first layer; an id past ``vocab`` makes ONNX Runtime's kernel fail."""
    table = np.arange(vocab * dim, dtype=np.float32).reshape(vocab, dim)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["vectors"], name="embed")],
        "embedding",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("vectors", TensorProto.FLOAT, ["batch", "seq", dim])],
        initializer=[numpy_helper.from_array(table, "table")],
    )
    return _save(graph, path)


def pixel_model(path: Path, width: int = 4) -> Path:
    """pixels (batch, width) UINT8 -> y (batch, width) FP32 = pixels / 255."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["pixels"], ["wide"], to=TensorProto.FLOAT),
            helper.make_node("Div", ["wide", "scale"], ["y"]),
        ],
        "pixels",
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        initializer=[numpy_helper.from_array(np.array(255.0, dtype=np.float32), "scale")],
    )
    return _save(graph, path)
