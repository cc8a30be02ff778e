"""Golden V2 requests, kept as data files (``tests/testdata/infer/*.json``), sent as they
are to a real daemon over gRPC: each file holds one ``ModelInferRequest`` in protobuf
JSON and either the answer it must get or the error (status and message).

A file names the daemon it is meant for: ``default`` (the embedded model) or ``repo``
(the Triton-style repository of ``conftest.build_repository``). Outputs are compared
after decoding ``raw_output_contents``, within the file's ``atol``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import json_format

from appliance._proto import grpc_service_pb2 as pb
from appliance._proto import grpc_service_pb2_grpc as pb_grpc
from appliance.tensors import V2_TO_NUMPY
from tests._daemon import DaemonProcess

GOLDEN = Path(__file__).resolve().parents[1] / "testdata" / "infer"
FILES = sorted(GOLDEN.glob("*.json"))


def test_the_golden_requests_are_there() -> None:
    assert len(FILES) >= 10
    kinds = {"response" in json.loads(f.read_text()) for f in FILES}
    assert kinds == {True, False}  # answers and errors both


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_golden_request(path: Path, request: pytest.FixtureRequest) -> None:
    golden = json.loads(path.read_text(encoding="utf-8"))
    assert golden["description"]
    daemon: DaemonProcess = request.getfixturevalue(f"{golden['daemon']}_daemon")
    message = json_format.ParseDict(golden["request"], pb.ModelInferRequest())
    with grpc.insecure_channel(daemon.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        if "error" in golden:
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(message, timeout=30)
            assert caught.value.code().name == golden["error"]["code"]
            assert golden["error"]["message"] in caught.value.details()
            return
        response = stub.ModelInfer(message, timeout=30)
    check_response(response, golden["response"])


def check_response(response: pb.ModelInferResponse, expected: dict[str, Any]) -> None:
    assert response.model_name == expected["model_name"]
    assert response.model_version == expected["model_version"]
    assert response.id == expected.get("id", "")
    assert [o.name for o in response.outputs] == [o["name"] for o in expected["outputs"]]
    # Outputs always come back as raw contents (tritonclient decodes only those).
    assert len(response.raw_output_contents) == len(response.outputs)
    for tensor, raw, want in zip(
        response.outputs, response.raw_output_contents, expected["outputs"], strict=True
    ):
        assert tensor.datatype == want["datatype"]
        assert list(tensor.shape) == want["shape"]
        got = np.frombuffer(raw, dtype=V2_TO_NUMPY[tensor.datatype]).reshape(want["shape"])
        wanted = np.asarray(want["data"], dtype=got.dtype).reshape(want["shape"])
        np.testing.assert_allclose(got, wanted, rtol=0, atol=want["atol"], err_msg=tensor.name)
