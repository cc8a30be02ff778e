"""Property-based fuzzing of ModelInfer against a running daemon.

Over 10,000 random and mutated requests (structured ones and flipped bytes of valid
ones, through ModelInfer and as messages of ModelStreamInfer streams, with client
strings up to thousands of characters): the daemon never crashes or hangs, every answer
is a success or a proper status code with a short message, and valid requests
afterwards are still answered correctly.
"""

from __future__ import annotations

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

EXAMPLES = 3_000  # per test and transport: 12,000 requests in all
STREAMS = 200  # per transport, up to 8 messages each
MODELS = ["affine", "tokens", "fixed", "ghost", ""]
#: Client strings the daemon cuts before they reach a message or a log line.
LONG = st.text(min_size=100, max_size=4000)
DATATYPES = [
    "FP32",
    "INT64",
    "FP16",
    "FP64",
    "INT8",
    "BOOL",
    "BYTES",
    "BF16",
    "UINT64",
    "",
    "fp32",
    "X" * 300,
]
# A structured request must never make the daemon fail internally.
CLIENT_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


@pytest.fixture(scope="module", params=["plaintext", "mtls"])
def daemon(request: pytest.FixtureRequest) -> DaemonProcess:
    """The same storm through plaintext and through mutual TLS (the auth gate is on)."""
    name = "repo_daemon" if request.param == "plaintext" else "tls_repo_daemon"
    found: DaemonProcess = request.getfixturevalue(name)
    return found


@pytest.fixture(scope="module")
def channel(daemon: DaemonProcess) -> Iterator[grpc.Channel]:
    with daemon.channel() as ch:
        yield ch


def _valid(model: str) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=model)
    if model == "tokens":
        for name in ("ids", "mask"):
            req.inputs.add(name=name, datatype="INT64", shape=[2, 3])
            req.raw_input_contents.append(np.ones((2, 3), np.int64).tobytes())
    elif model == "fixed":
        req.inputs.add(name="x", datatype="FP32", shape=[3, 2])
        req.raw_input_contents.append(np.ones((3, 2), np.float32).tobytes())
    else:
        req.inputs.add(name="x", datatype="FP32", shape=[2, 4])
        req.raw_input_contents.append(np.ones((2, 4), np.float32).tobytes())
    return req


dims = st.one_of(st.integers(-3, 6), st.sampled_from([0, 2**31, 2**62, -(2**63)]))


@st.composite
def mutated_requests(draw: Any) -> pb.ModelInferRequest:  # noqa: PLR0912 - one branch a mutation
    model = draw(st.one_of(st.sampled_from(MODELS), LONG))
    req = _valid(draw(st.sampled_from(["affine", "tokens", "fixed"])))
    req.model_name = model
    req.model_version = draw(
        st.sampled_from(["", "", "1", "2", "0", "-1", "abc", "99999999999999999999", "9" * 5000])
    )
    req.id = draw(st.one_of(st.text(max_size=20), LONG))
    for tensor in req.inputs:
        if draw(st.booleans()):
            tensor.datatype = draw(st.sampled_from(DATATYPES))
        if draw(st.booleans()):
            del tensor.shape[:]
            tensor.shape.extend(draw(st.lists(dims, max_size=4)))
        if draw(st.integers(0, 4)) == 0:
            tensor.name = draw(
                st.one_of(st.sampled_from(["x", "ids", "mask", "", "y", "x "]), LONG)
            )
    action = draw(st.integers(0, 9))
    if action == 0:
        del req.raw_input_contents[:]
    elif action == 1:
        req.raw_input_contents.append(draw(st.binary(max_size=64)))
    elif action == 2 and req.raw_input_contents:
        req.raw_input_contents[0] = draw(st.binary(max_size=96))
    elif action == 3:
        del req.raw_input_contents[:]
        for tensor in req.inputs:
            tensor.contents.fp32_contents.extend(draw(st.lists(st.floats(width=32), max_size=12)))
            tensor.contents.int64_contents.extend(
                draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=8))
            )
    elif action == 4:
        extra = req.inputs.add(name=draw(st.sampled_from(["x", "z", "ids"])), datatype="FP32")
        extra.shape.extend(draw(st.lists(dims, max_size=3)))
    elif action == 5:
        del req.inputs[:]
    elif action == 6:
        req.outputs.add(name=draw(st.sampled_from(["y", "total", "nope", ""])))
    elif action == 7:
        req.parameters["binary_data_output"].bool_param = True
    return req


def _check_answer(channel: grpc.Channel, req: pb.ModelInferRequest) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    try:
        reply = stub.ModelInfer(req, timeout=10)
    except grpc.RpcError as err:
        assert err.code() in CLIENT_CODES, (err.code(), err.details())
        assert err.details(), "a refusal without a message"
        assert len(err.details()) < 2048, "a client's string came back whole"
        return
    assert len(reply.outputs) == len(reply.raw_output_contents)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(req=mutated_requests())
def test_structured_mutations_get_proper_answers(
    channel: grpc.Channel, req: pb.ModelInferRequest
) -> None:
    _check_answer(channel, req)


@settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
@given(
    model=st.sampled_from(["affine", "tokens", "fixed"]),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 200)),
)
def test_flipped_bytes_never_crash_or_hang(
    channel: grpc.Channel, model: str, flips: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(_valid(model).SerializeToString())
    for position, mask in flips:
        data[position % len(data)] ^= mask
    if cut is not None:
        data = data[:cut]
    call = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=None,
        response_deserializer=None,
    )
    try:
        call(bytes(data), timeout=10)
    except grpc.RpcError as err:
        # Bytes that do not parse are INVALID_ARGUMENT like any other client mistake.
        assert err.code() in CLIENT_CODES, (err.code(), err.details())
        assert err.details()


@settings(
    max_examples=STREAMS, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
@given(reqs=st.lists(mutated_requests(), min_size=1, max_size=8))
def test_stream_messages_get_proper_answers(
    channel: grpc.Channel, reqs: list[pb.ModelInferRequest]
) -> None:
    """One stream per example: each message answered in order, a refusal in its
    ``error_message``; a bad message never ends the stream."""
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    replies = list(stub.ModelStreamInfer(iter(reqs), timeout=30))
    assert len(replies) == len(reqs)
    for req, reply in zip(reqs, replies, strict=True):
        assert reply.infer_response.id == req.id
        if reply.error_message:
            code = reply.error_message.partition(":")[0]
            assert code in {c.name for c in CLIENT_CODES}, reply.error_message
            assert len(reply.error_message) < 2048
        else:
            response = reply.infer_response
            assert len(response.outputs) == len(response.raw_output_contents)


def test_after_the_storm_valid_requests_are_answered_correctly(
    channel: grpc.Channel, daemon: DaemonProcess
) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    req = pb.ModelInferRequest(model_name="affine")
    req.inputs.add(name="x", datatype="FP32", shape=[2, 4])
    req.raw_input_contents.append(x.tobytes())
    reply = stub.ModelInfer(req, timeout=10)
    got = np.frombuffer(reply.raw_output_contents[0], np.float32).reshape(2, 4)
    np.testing.assert_array_equal(got, 3 * x + 1)
    assert daemon.process is not None and daemon.process.poll() is None
    assert "Traceback" not in daemon.log_text()
