"""A one-node ONNX model, built in memory, for probing execution providers."""

from __future__ import annotations

from functools import cache

from onnx import TensorProto, helper


@cache
def identity_model_bytes() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10  # ONNX Runtime 1.31 loads IR <= 13; onnx 1.23 writes 14
    return bytes(model.SerializeToString())
