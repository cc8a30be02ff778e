"""Property-based fuzzing of the generative tensors against a running daemon (the
serving fuzz tests' approach, ``tests/serving/test_fuzz.py``, on a generative model).

Random and mutated generation requests (tensor names, datatypes, shapes, raw bytes,
sampling JSON with wrong keys, types and ranges, flags), through ModelInfer and as
messages of ModelStreamInfer streams: the daemon never crashes or hangs, every refusal
is a client status code with a short message, and a valid request afterwards still gets
its greedy text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc.service_pb2 as pb
import tritonclient.grpc.service_pb2_grpc as pb_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._daemon import DaemonProcess
from tests.generative.conftest import LM

EXAMPLES = 600
STREAMS = 60
CLIENT_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
NAMES = [
    "text_input",
    "stream",
    "sampling_parameters",
    "exclude_input_in_output",
    "return_finish_reason",
    "return_num_output_tokens",
    "prompt",
    "",
]
DATATYPES = ["BYTES", "BOOL", "INT32", "FP32", "UINT32", "", "bytes"]
SAMPLING_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.text(max_size=4), max_size=3),
)
SAMPLING_KEYS = [
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "repetition_penalty",
    "ignore_eos",
    "seed",
    "n",
    "best_of",
]


def _bytes_element(value: bytes) -> bytes:
    return len(value).to_bytes(4, "little") + value


@st.composite
def sampling_json(draw: Any) -> bytes:
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=40))  # not JSON, or not UTF-8
    keys = draw(st.lists(st.sampled_from(SAMPLING_KEYS), max_size=4, unique=True))
    body = {k: draw(SAMPLING_VALUES) for k in keys}
    body.setdefault("max_tokens", 8)  # keep valid generations short
    return json.dumps(body).encode()


@st.composite
def generation_requests(draw: Any) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=LM, id=draw(st.text(max_size=12)))
    tensors: list[tuple[str, str, list[int], bytes]] = [
        ("text_input", "BYTES", [1], _bytes_element(draw(st.binary(min_size=1, max_size=60)))),
        ("sampling_parameters", "BYTES", [1], _bytes_element(draw(sampling_json()))),
    ]
    for flag in draw(st.lists(st.sampled_from(NAMES[3:6]), max_size=2, unique=True)):
        tensors.append((flag, "BOOL", [1], bytes([draw(st.integers(0, 1))])))
    if draw(st.booleans()):
        tensors.append(("stream", "BOOL", [1], bytes([draw(st.integers(0, 1))])))
    for name, datatype, shape, raw in tensors:
        tensor = req.inputs.add(name=name, datatype=datatype, shape=shape)
        if draw(st.integers(0, 6)) == 0:
            tensor.name = draw(st.sampled_from(NAMES))
        if draw(st.integers(0, 6)) == 0:
            tensor.datatype = draw(st.sampled_from(DATATYPES))
        if draw(st.integers(0, 6)) == 0:
            del tensor.shape[:]
            tensor.shape.extend(draw(st.lists(st.integers(-2, 3), max_size=3)))
        mangled = draw(st.binary(max_size=16)) if draw(st.integers(0, 8)) == 0 else raw
        req.raw_input_contents.append(mangled)
    if draw(st.integers(0, 10)) == 0:
        req.outputs.add(name=draw(st.sampled_from(["text_output", "finish_reason", "nope"])))
    if draw(st.integers(0, 10)) == 0:
        del req.raw_input_contents[-1]
    return req


@pytest.fixture(scope="module")
def stub(lm_daemon: DaemonProcess) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with lm_daemon.channel() as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def _short_refusal(code: grpc.StatusCode, details: str) -> None:
    assert code in CLIENT_CODES, (code, details)
    assert details and len(details) < 2048


@settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
@given(req=generation_requests())
def test_mutated_generation_requests_get_proper_answers(
    stub: pb_grpc.GRPCInferenceServiceStub, req: pb.ModelInferRequest
) -> None:
    try:
        reply = stub.ModelInfer(req, timeout=30)
    except grpc.RpcError as err:
        _short_refusal(err.code(), err.details())
        return
    assert len(reply.outputs) == len(reply.raw_output_contents) >= 1


@settings(
    max_examples=STREAMS, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
@given(reqs=st.lists(generation_requests(), min_size=1, max_size=6))
def test_mutated_generation_streams_never_end_early(
    stub: pb_grpc.GRPCInferenceServiceStub, reqs: list[pb.ModelInferRequest]
) -> None:
    """Every message gets its final response or its error; the stream ends cleanly."""
    finals = 0
    for reply in stub.ModelStreamInfer(iter(reqs), timeout=60):
        if reply.error_message:
            code = reply.error_message.partition(":")[0]
            assert code in {c.name for c in CLIENT_CODES}, reply.error_message
            finals += 1
            continue
        parameters = reply.infer_response.parameters
        if "triton_final_response" not in parameters:
            finals += 1  # not a generation: one response
        elif parameters["triton_final_response"].bool_param:
            finals += 1
    assert finals == len(reqs)


def test_the_daemon_still_answers_after_the_storm(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    req = pb.ModelInferRequest(model_name=LM)
    for name, value in (("text_input", b"The patient"), ("sampling_parameters", b"{}")):
        req.inputs.add(name=name, datatype="BYTES", shape=[1])
        req.raw_input_contents.append(_bytes_element(value))
    reply = stub.ModelInfer(req, timeout=30)
    text = reply.raw_output_contents[0][4:].decode()
    assert text.startswith("The patient") and len(text) > len("The patient")
    assert np.frombuffer(reply.raw_output_contents[0][:4], "<u4")[0] == len(text.encode())
