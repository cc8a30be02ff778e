"""Log amplification: client strings of megabytes cost the log a few hundred bytes.

A client sends model names, versions, ids, input names, datatypes and shapes far longer
than any real one (2 MiB names, 100,000-dimension shapes), through ModelInfer and
ModelStreamInfer, with every request logged. Each refusal's message, each log line and
each stream reply stays short; metric labels stay the loaded models' names.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import grpc
import numpy as np

from appliance._proto import grpc_service_pb2 as pb
from appliance._proto import grpc_service_pb2_grpc as pb_grpc
from tests._daemon import DaemonProcess
from tests.models import affine_model

HUGE = "m" * (2 * 1024 * 1024)


def _requests() -> list[pb.ModelInferRequest]:
    unknown = pb.ModelInferRequest(model_name=HUGE, model_version="9" * 100_000, id=HUGE)
    wrong_version = pb.ModelInferRequest(model_name="affine", model_version="v" + HUGE)
    names = pb.ModelInferRequest(model_name="affine")
    names.inputs.add(name=HUGE, datatype="FP32", shape=[1, 4])
    datatype = pb.ModelInferRequest(model_name="affine")
    datatype.inputs.add(name="x", datatype=HUGE, shape=[1, 4])
    shape = pb.ModelInferRequest(model_name="affine")
    shape.inputs.add(name="x", datatype="FP32", shape=[1] * 100_000)
    many = pb.ModelInferRequest(model_name="affine")
    for i in range(20_000):
        many.inputs.add(name=f"x{i}", datatype="FP32", shape=[1, 4])
    outputs = pb.ModelInferRequest(model_name="affine")
    outputs.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    outputs.raw_input_contents.append(np.ones((1, 4), np.float32).tobytes())
    outputs.outputs.add(name=HUGE)
    return [unknown, wrong_version, names, datatype, shape, many, outputs]


def test_huge_client_strings_are_cut_in_replies_logs_and_labels(tmp_path: Path) -> None:
    affine_model(tmp_path / "repository" / "affine" / "1" / "model.onnx")
    config = {"logging": {"format": "json", "requests": "all"}}
    with DaemonProcess(tmp_path, config) as daemon, daemon.channel() as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        before = daemon.log_path.stat().st_size
        requests = _requests()
        details = []
        for request in requests:
            try:
                stub.ModelInfer(request, timeout=60)
            except grpc.RpcError as exc:
                assert exc.code() in (
                    grpc.StatusCode.INVALID_ARGUMENT,
                    grpc.StatusCode.NOT_FOUND,
                ), exc.details()
                details.append(exc.details())
        replies = list(stub.ModelStreamInfer(iter(requests), timeout=60))
        url = f"http://127.0.0.1:{daemon.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as page:
            metrics = page.read().decode()
        grown = daemon.log_path.stat().st_size - before
    sent = sum(r.ByteSize() for r in requests) * 2
    assert len(details) == len(requests)
    assert max(len(d) for d in details) < 1024, max(details, key=len)[:300]
    assert len(replies) == len(requests)
    for reply in replies:
        assert reply.error_message and len(reply.error_message) < 1024
        assert len(reply.infer_response.model_name) < 256
    # Two requests' worth of log lines per request at most, whatever the client sent.
    assert grown < 4 * 1024 * len(requests), (grown, sent)
    assert "mmmmmmmmmm" * 20 not in metrics
    assert 'model="_unknown"' in metrics
