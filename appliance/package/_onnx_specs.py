"""Tensor specs read from an ONNX graph: names, V2 datatypes, shapes with -1 for dynamic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from appliance.errors import PackageError
from appliance.package.external import external_data_files
from appliance.package.manifest import Datatype, TensorSpec

# ONNX TensorProto element types to KServe V2 datatype names.
_V2_BY_ONNX: dict[int, Datatype] = {
    onnx.TensorProto.BOOL: "BOOL",
    onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.UINT16: "UINT16",
    onnx.TensorProto.UINT32: "UINT32",
    onnx.TensorProto.UINT64: "UINT64",
    onnx.TensorProto.INT8: "INT8",
    onnx.TensorProto.INT16: "INT16",
    onnx.TensorProto.INT32: "INT32",
    onnx.TensorProto.INT64: "INT64",
    onnx.TensorProto.FLOAT16: "FP16",
    onnx.TensorProto.FLOAT: "FP32",
    onnx.TensorProto.DOUBLE: "FP64",
    onnx.TensorProto.STRING: "BYTES",
}

NUMPY_BY_V2: dict[str, type[np.generic]] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def load_graph(onnx_path: Path) -> onnx.ModelProto:
    """The model without its weights' external data (we only need the graph's signature)."""
    try:
        return onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ... on a bad file
        message = f"{onnx_path}: expected an ONNX model, could not read it: {exc}"
        raise PackageError(message) from exc


def _spec(value: onnx.ValueInfoProto) -> TensorSpec:
    tensor_type = value.type.tensor_type
    if value.type.WhichOneof("value") != "tensor_type":
        raise PackageError(f"tensor {value.name!r}: expected a plain tensor, got a sequence/map")
    datatype = _V2_BY_ONNX.get(tensor_type.elem_type)
    if datatype is None:
        raise PackageError(
            f"tensor {value.name!r}: element type {tensor_type.elem_type} has no V2 datatype"
        )
    shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
    return TensorSpec(name=value.name, datatype=datatype, shape=shape)


def graph_specs(model: onnx.ModelProto) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """(inputs, outputs) of the graph; initializers listed as inputs (old exporters) are skipped."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = tuple(_spec(v) for v in model.graph.input if v.name not in initializers)
    outputs = tuple(_spec(v) for v in model.graph.output)
    return inputs, outputs


__all__ = ["NUMPY_BY_V2", "external_data_files", "graph_specs", "load_graph"]
