"""Every client mistake gets the status of DESIGN.md and a message naming what was
expected and what arrived; the daemon stays up and keeps answering."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc.service_pb2 as pb
import tritonclient.grpc.service_pb2_grpc as pb_grpc

from tests._daemon import DaemonProcess
from tests.serving.conftest import tumour_rows


@pytest.fixture(scope="module")
def stub(default_daemon: DaemonProcess) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    options = [("grpc.max_send_message_length", 256 * 1024 * 1024)]
    with grpc.insecure_channel(default_daemon.address, options=options) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def request(
    rows: np.ndarray | None = None,
    *,
    model: str = "breast_cancer",
    name: str = "input",
    datatype: str = "FP32",
    shape: list[int] | None = None,
    raw: bytes | None = None,
) -> pb.ModelInferRequest:
    rows = tumour_rows(2) if rows is None else rows
    req = pb.ModelInferRequest(model_name=model)
    req.inputs.add(name=name, datatype=datatype, shape=shape or list(rows.shape))
    req.raw_input_contents.append(rows.tobytes() if raw is None else raw)
    return req


def refused(stub: pb_grpc.GRPCInferenceServiceStub, req: pb.ModelInferRequest) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(req, timeout=10)
    return err.value


def test_unknown_model_is_not_found(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    err = refused(stub, request(model="lung_cancer"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "lung_cancer" in err.details() and "breast_cancer" in err.details()


def test_empty_request_names_the_expected_inputs(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    err = refused(stub, pb.ModelInferRequest(model_name="breast_cancer"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input (FP32, [-1, 30])" in err.details() and "none" in err.details()


def test_missing_input(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    err = refused(stub, request(name="features"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no input 'features'" in err.details() and "input (FP32" in err.details()


def test_extra_input(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    req = request()
    req.inputs.add(name="age", datatype="FP32", shape=[2, 1])
    req.raw_input_contents.append(np.zeros((2, 1), np.float32).tobytes())
    err = refused(stub, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no input 'age'" in err.details()


def test_duplicated_input(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    req = request()
    req.inputs.add(name="input", datatype="FP32", shape=[2, 30])
    req.raw_input_contents.append(tumour_rows(2).tobytes())
    err = refused(stub, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'input' appears more than once" in err.details()


def test_wrong_datatype(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    rows = tumour_rows(2).astype(np.float64)
    err = refused(stub, request(rows, datatype="FP64"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected datatype FP32, got FP64" in err.details()


@pytest.mark.parametrize("shape", [[2, 29], [2, 30, 1], [60]])
def test_shape_not_matching_the_model(
    stub: pb_grpc.GRPCInferenceServiceStub, shape: list[int]
) -> None:
    rows = np.zeros(shape, np.float32)
    err = refused(stub, request(rows))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"expected shape [-1, 30] (-1: any size), got {shape}" in err.details()


def test_raw_bytes_not_matching_shape_and_dtype(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    err = refused(stub, request(shape=[2, 30], raw=b"\x00" * 239))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "needs 240 bytes, got 239" in err.details()


def test_huge_claimed_shape_with_few_bytes(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    err = refused(stub, request(shape=[2**40, 30], raw=b"\x00" * 240))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_batch_over_the_maximum(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    rows = np.zeros((33, 30), np.float32)
    err = refused(stub, request(rows))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "33 rows is over the maximum of 32" in err.details()


def test_raw_and_typed_contents_count_mismatch(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    req = request()
    req.raw_input_contents.append(b"spare")
    err = refused(stub, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw_input_contents has 2 entries, expected one per input (1)" in err.details()


def test_typed_contents_are_accepted_and_checked(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    rows = tumour_rows(1)
    req = pb.ModelInferRequest(model_name="breast_cancer")
    tensor = req.inputs.add(name="input", datatype="FP32", shape=[1, 30])
    tensor.contents.fp32_contents.extend(rows.ravel().tolist())
    reply = stub.ModelInfer(req, timeout=10)
    assert len(reply.raw_output_contents[0]) == 2 * 4  # outputs always travel raw
    del tensor.contents.fp32_contents[-1]
    err = refused(stub, req)
    assert "needs 30 values, got 29" in err.details()


def test_unknown_requested_output(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    req = request()
    req.outputs.add(name="risk")
    err = refused(stub, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no output 'risk'" in err.details() and "probabilities" in err.details()


def test_oversized_message_is_resource_exhausted(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    # Over the daemon's 64 MiB default: refused by gRPC before any decoding.
    raw = b"\x00" * (65 * 1024 * 1024)
    err = refused(stub, request(shape=[len(raw) // 120, 30], raw=raw))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_the_daemon_still_answers_after_all_that(
    stub: pb_grpc.GRPCInferenceServiceStub, default_daemon: DaemonProcess
) -> None:
    reply = stub.ModelInfer(request(tumour_rows(3)), timeout=10)
    probs = np.frombuffer(reply.raw_output_contents[0], np.float32).reshape(3, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert default_daemon.process is not None and default_daemon.process.poll() is None


def test_client_errors_are_logged_in_one_line_without_tensor_contents(
    default_daemon: DaemonProcess,
) -> None:
    log = default_daemon.log_text()
    assert "ModelInfer -> INVALID_ARGUMENT" in log
    assert "Traceback" not in log
