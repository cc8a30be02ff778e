"""KServe V2 REST bodies, with Triton's binary tensor data extension: bytes <-> core types.

The only module that knows the V2 JSON layout, as ``servicers._convert`` is for protobuf.
An infer request is a JSON object, optionally followed by raw tensor bytes: the header
``Inference-Header-Content-Length`` gives the JSON's length, and each input whose
``parameters.binary_data_size`` is set takes that many bytes from the rest of the body,
in input order (https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_binary_data.md).
An output goes back as binary data when its request entry says ``binary_data: true``, or
when no outputs are named and the request's ``binary_data_output`` parameter is true
(what ``tritonclient.http`` sends by default); else as a flat JSON ``data`` list.

Inputs stay undecoded here (``RequestTensor`` with raw bytes or a flat list of values);
``appliance.model`` checks them against the model, as for gRPC.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.errors import InvalidInputError
from appliance.model import Array, RequestTensor
from appliance.package.manifest import TensorSpec
from appliance.tensors import encode

HEADER_LENGTH = "Inference-Header-Content-Length"

# The JSON value types each datatype accepts, by exact type: a JSON true is not a 1.
_INTS = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
_ACCEPTS: dict[str, tuple[type, ...]] = {
    "BOOL": (bool,),
    **dict.fromkeys(_INTS, (int,)),
    **dict.fromkeys(("FP16", "FP32", "FP64", "BF16"), (int, float)),
    "BYTES": (str,),
}
_GOOD = object()


@dataclass(frozen=True)
class InferRequest:
    id: str
    tensors: list[RequestTensor]
    outputs: list[str]  # names asked for; empty: every output
    binary: dict[str, bool]  # per named output
    binary_default: bool  # for outputs not named
    timeout_us: int | None  # Triton's request parameter "timeout"


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError(f"{where}: expected a JSON object, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


def _header(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    """The JSON header and the binary section after it."""
    if header_length is None:
        size = len(body)
    elif header_length.isdigit() and int(header_length) <= len(body):
        size = int(header_length)
    else:
        raise InvalidInputError(
            f"{HEADER_LENGTH}: expected a length of at most the body's {len(body)} bytes, "
            f"got {header_length[:32]!r}"
        )
    try:
        header = json.loads(body[:size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(
            f"expected a JSON infer request ({size} bytes), got one that does not parse: {exc}"
        ) from exc
    return _object(header, "infer request"), memoryview(body)[size:]


def parse_infer(body: bytes, header_length: str | None) -> InferRequest:
    """An infer request body (JSON, or JSON plus binary tensor data)."""
    header, binary = _header(body, header_length)
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInputError(f"inputs: expected a non-empty array, got {_kind(inputs)}")
    tensors: list[RequestTensor] = []
    offset = 0
    for i, raw in enumerate(inputs):
        tensor, size = _input(_object(raw, f"inputs[{i}]"), i, binary, offset)
        tensors.append(tensor)
        offset += size
    if offset != len(binary):
        raise InvalidInputError(
            f"the inputs' binary_data_size add up to {offset} bytes, but {len(binary)} "
            "bytes follow the JSON header"
        )
    parameters = _object(header.get("parameters", {}), "parameters")
    outputs, binary_flags = _outputs(header.get("outputs", []))
    request_id = header.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidInputError(f"id: expected a string, got {_kind(request_id)}")
    return InferRequest(
        id=request_id,
        tensors=tensors,
        outputs=outputs,
        binary=binary_flags,
        binary_default=parameters.get("binary_data_output") is True,
        timeout_us=_timeout(parameters.get("timeout")),
    )


def _timeout(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInputError(
            f"parameters.timeout: expected microseconds (an integer >= 0), got {value!r:.32}"
        )
    return value or None


def _input(
    raw: dict[str, Any], index: int, binary: memoryview, offset: int
) -> tuple[RequestTensor, int]:
    where = f"inputs[{index}]"
    name, datatype, shape = raw.get("name"), raw.get("datatype"), raw.get("shape")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"{where}.name: expected a string, got {_kind(name)}")
    if not isinstance(datatype, str):
        raise InvalidInputError(f"{where}.datatype: expected a string, got {_kind(datatype)}")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidInputError(
            f"{where}.shape: expected an array of integers >= 0, got {json.dumps(shape)[:64]}"
        )
    parameters = _object(raw.get("parameters", {}), f"{where}.parameters")
    if "shared_memory_region" in parameters:
        raise InvalidInputError(
            f"input {name!r}: shared memory is not supported; send the data in the body"
        )
    size = parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInputError(
                f"input {name!r}: binary_data_size: expected an integer >= 0, got {size!r:.32}"
            )
        if "data" in raw:
            raise InvalidInputError(
                f"input {name!r} has both data and binary_data_size; expected one of them"
            )
        if offset + size > len(binary):
            raise InvalidInputError(
                f"input {name!r}: binary_data_size {size} runs past the end of the body "
                f"({len(binary) - offset} bytes left)"
            )
        raw_bytes = bytes(binary[offset : offset + size])
        return RequestTensor(name, datatype, tuple(shape), raw=raw_bytes), size
    if "data" not in raw:
        raise InvalidInputError(
            f"input {name!r}: expected data or parameters.binary_data_size, got neither"
        )
    values = _flat_values(raw["data"], name, datatype)
    return RequestTensor(name, datatype, tuple(shape), values=values), 0


def _flat_values(data: Any, name: str, datatype: str) -> list[Any]:
    """``data`` flattened row-major (V2 allows nested arrays), its values checked."""
    if not isinstance(data, list):
        raise InvalidInputError(f"input {name!r}: data: expected an array, got {_kind(data)}")
    flat: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    accepts = _ACCEPTS.get(datatype)
    if accepts is not None:  # BYTES or an unknown name: the model check names the datatype
        bad = next((v for v in flat if type(v) not in accepts), _GOOD)
        if bad is not _GOOD:
            raise InvalidInputError(
                f"input {name!r}: data: expected {datatype} values, got {_kind(bad)} "
                f"({json.dumps(bad)[:32]})"
            )
    return flat


def _outputs(raw: Any) -> tuple[list[str], dict[str, bool]]:
    if not isinstance(raw, list):
        raise InvalidInputError(f"outputs: expected an array, got {_kind(raw)}")
    names: list[str] = []
    binary: dict[str, bool] = {}
    for i, entry in enumerate(raw):
        output = _object(entry, f"outputs[{i}]")
        name = output.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"outputs[{i}].name: expected a string, got {_kind(name)}")
        parameters = _object(output.get("parameters", {}), f"outputs[{i}].parameters")
        if parameters.get("classification"):
            raise InvalidInputError(
                f"output {name!r}: the classification extension is not supported; ask for "
                "the output tensor and take its top classes"
            )
        if "shared_memory_region" in parameters:
            raise InvalidInputError(f"output {name!r}: shared memory is not supported")
        names.append(name)
        binary[name] = parameters.get("binary_data") is True
    return names, binary


@dataclass(frozen=True)
class InferResponse:
    body: bytes
    header_length: int | None  # set when binary data follows the JSON


def encode_infer(
    model_name: str,
    version: int,
    request: InferRequest,
    outputs: Mapping[str, Array],
    specs: Sequence[TensorSpec],
) -> InferResponse:
    """The V2 response: JSON header, then the binary outputs in header order."""
    datatypes = {s.name: s.datatype for s in specs}
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, array in outputs.items():
        entry: dict[str, Any] = {
            "name": name,
            "datatype": datatypes[name],
            "shape": list(array.shape),
        }
        if request.binary.get(name, request.binary_default):
            data = encode(array)
            entry["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        elif array.dtype == np.object_:  # BYTES: JSON strings, as Triton writes them
            entry["data"] = [bytes(b).decode("utf-8", "replace") for b in array.ravel()]
        else:
            entry["data"] = np.asarray(array).ravel().tolist()
        entries.append(entry)
    header: dict[str, Any] = {"model_name": model_name, "model_version": str(version)}
    if request.id:
        header["id"] = request.id
    header["outputs"] = entries
    text = json.dumps(header, separators=(",", ":")).encode()
    if not chunks:
        return InferResponse(text, None)
    return InferResponse(b"".join([text, *chunks]), len(text))


__all__ = ["HEADER_LENGTH", "InferRequest", "InferResponse", "encode_infer", "parse_infer"]
