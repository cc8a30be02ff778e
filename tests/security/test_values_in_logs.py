"""Tensor values never reach a log: numpy's overflow text and ONNX Runtime's kernel errors.

A client sends a UINT8 value out of range (424242) and a token id past the vocabulary
(31337). Both are refused with INVALID_ARGUMENT naming the tensor, the datatype and the
kind of fault; neither number appears in anything the daemon wrote, and ONNX Runtime's
own error line arrives as a record of the ``onnxruntime`` logger with the value taken out.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import numpy as np

from appliance._proto import grpc_service_pb2 as pb
from appliance._proto import grpc_service_pb2_grpc as pb_grpc
from tests._daemon import DaemonProcess
from tests.models import embedding_model, pixel_model

PIXEL = 424242
TOKEN = 31337


def test_values_the_model_cannot_take_are_refused_and_never_logged(tmp_path: Path) -> None:
    pixel_model(tmp_path / "repository" / "pixels" / "1" / "model.onnx")
    embedding_model(tmp_path / "repository" / "embed" / "1" / "model.onnx")
    config = {"logging": {"format": "json", "requests": "all", "level": "DEBUG"}}
    with DaemonProcess(tmp_path, config) as daemon, daemon.channel() as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        pixels = pb.ModelInferRequest(model_name="pixels")
        tensor = pixels.inputs.add(name="pixels", datatype="UINT8", shape=[1, 4])
        tensor.contents.uint_contents.extend([1, 2, PIXEL, 3])
        tokens = pb.ModelInferRequest(model_name="embed")
        tokens.inputs.add(name="ids", datatype="INT64", shape=[1, 3])
        tokens.raw_input_contents.append(np.array([[1, TOKEN, 2]], np.int64).tobytes())
        refusals = {}
        for name, request in (("pixels", pixels), ("tokens", tokens)):
            try:
                stub.ModelInfer(request, timeout=30)
            except grpc.RpcError as exc:
                refusals[name] = (exc.code(), exc.details())
        # A stream carries the same refusal in its error message.
        (streamed,) = list(stub.ModelStreamInfer(iter([tokens]), timeout=30))
    for code, _ in refusals.values():
        assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'pixels'" in refusals["pixels"][1] and "UINT8 (0 to 255)" in refusals["pixels"][1]
    assert "Gather node" in refusals["tokens"][1] and "'embed'" in refusals["tokens"][1]
    assert streamed.error_message.startswith("INVALID_ARGUMENT: ")
    for _, details in refusals.values():
        assert str(PIXEL) not in details and str(TOKEN) not in details
    assert str(TOKEN) not in streamed.error_message

    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert str(PIXEL).encode() not in written
    assert str(TOKEN).encode() not in written
    records = [json.loads(line) for line in daemon.log_text().splitlines() if line.strip()]
    native = [r for r in records if r["logger"] == "onnxruntime"]
    assert native, "ONNX Runtime's own error line did not come through our log"
    assert all("withheld" in r["msg"] for r in native if "Status Message" in r["msg"])
    assert not any(r["logger"] == "native" for r in records)
