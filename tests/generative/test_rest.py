"""Unary generation over V2 REST with the real ``tritonclient.http``: JSON and binary
tensors give the same text as gRPC."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from tests._daemon import DaemonProcess
from tests.generative._client import inputs
from tests.generative.conftest import LM


@pytest.mark.parametrize("binary", [True, False])
def test_rest_infer_equals_grpc(lm_daemon: DaemonProcess, binary: bool) -> None:
    sampling = json.dumps({"max_tokens": 16}).encode()
    tensors = []
    for name, value in (("text_input", b"The patient"), ("sampling_parameters", sampling)):
        tensor = triton_http.InferInput(name, [1], "BYTES")
        tensor.set_data_from_numpy(np.array([value], dtype=np.object_), binary_data=binary)
        tensors.append(tensor)
    wanted = [triton_http.InferRequestedOutput("text_output", binary_data=binary)]
    with triton_http.InferenceServerClient(lm_daemon.http_address) as client:
        assert client.get_model_metadata(LM)["platform"] == "onnxruntime_genai"
        text = client.infer(LM, tensors, outputs=wanted).as_numpy("text_output")[0]
    with triton_grpc.InferenceServerClient(lm_daemon.address) as client:
        expected = client.infer(LM, inputs("The patient", {"max_tokens": 16}))
    want = expected.as_numpy("text_output")[0].decode()
    assert (text.decode() if isinstance(text, bytes) else text) == want


def test_rest_refuses_a_number_as_text(lm_daemon: DaemonProcess) -> None:
    body = {"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1], "data": [5]}]}
    request = urllib.request.Request(
        f"http://{lm_daemon.http_address}/v2/models/{LM}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400
    assert "BYTES" in json.loads(caught.value.read())["error"]
