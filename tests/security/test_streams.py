"""Stream exhaustion: an unprivileged local user holds as many idle streams as it can.

One client opening idle ModelStreamInfer streams used to fill every RPC slot, liveness
probes included, for up to 30 minutes. Now its streams past the per-peer cap are refused
at once, the ones it holds end once idle, and while it holds them health checks,
liveness and other clients' requests are answered; at the global cap, probes still are.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from appliance._proto import grpc_service_pb2 as pb
from appliance._proto import grpc_service_pb2_grpc as pb_grpc
from tests._daemon import DaemonProcess
from tests.security.conftest import outcome, start_as_nobody

IDLE_S = 5.0


def _infer(stub: pb_grpc.GRPCInferenceServiceStub) -> pb.ModelInferResponse:
    request = pb.ModelInferRequest(model_name="breast_cancer")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 30])
    request.raw_input_contents.append(np.ones((1, 30), np.float32).tobytes())
    reply: pb.ModelInferResponse = stub.ModelInfer(request, timeout=30)
    return reply


def _probes_answer(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    check = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert check.status == health_pb2.HealthCheckResponse.SERVING
    stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live
    assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready


def _own_stream_refused(channel: grpc.Channel, needle: str, within: float = 60) -> str:
    """Poll until a stream of ours is refused with ``needle``: the attacker holds its
    streams by then. Returns the refusal's message."""
    stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            for _ in stub.ModelStreamInfer(iter(()), timeout=5):
                pass
        except grpc.RpcError as exc:
            if exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and needle in exc.details():
                return str(exc.details())
        time.sleep(0.05)
    raise AssertionError(f"the attacker's streams never filled the cap ({needle})")


def test_idle_streams_past_the_peer_cap_are_refused_and_held_ones_time_out(
    tmp_path: Path,
) -> None:
    server = {
        "max_concurrent_rpcs": 16,
        "max_streams_per_peer": 4,
        "stream_idle_timeout_s": IDLE_S,
    }
    with DaemonProcess(tmp_path, {"server": server}) as daemon:
        attacker = start_as_nobody(
            "streams", {"address": daemon.address, "count": 10, "hold_s": 4 * IDLE_S}
        )
        with daemon.channel() as channel:
            refusal = _own_stream_refused(channel, "max_streams_per_peer")
            _probes_answer(channel)
            assert len(_infer(pb_grpc.GRPCInferenceServiceStub(channel)).outputs) == 1  # type: ignore[no-untyped-call]
            report = outcome(attacker)
            # Once the idle ones are gone, a stream of ours opens and answers again.
            stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
            request = pb.ModelInferRequest(model_name="breast_cancer", id="after")
            request.inputs.add(name="input", datatype="FP32", shape=[1, 30])
            request.raw_input_contents.append(np.ones((1, 30), np.float32).tobytes())
            (answer,) = list(stub.ModelStreamInfer(iter([request]), timeout=30))
            assert answer.infer_response.id == "after" and not answer.error_message
    assert "4 streams open" in refusal
    ended = sorted(e.split(":")[0] for e in report["ended"])
    assert ended == ["DEADLINE_EXCEEDED"] * 4 + ["RESOURCE_EXHAUSTED"] * 6, report
    idle = next(e for e in report["ended"] if e.startswith("DEADLINE_EXCEEDED"))
    assert "stream_idle_timeout_s" in idle
    assert daemon.process is not None and daemon.process.returncode == 0


def test_at_the_rpc_limit_probes_are_still_answered(tmp_path: Path) -> None:
    server = {"max_concurrent_rpcs": 4, "stream_idle_timeout_s": 2 * IDLE_S}
    with DaemonProcess(tmp_path, {"server": server}) as daemon:
        attacker = start_as_nobody(
            "streams", {"address": daemon.address, "count": 8, "hold_s": 3 * IDLE_S}
        )
        with daemon.channel() as channel:
            _own_stream_refused(channel, "max_concurrent_rpcs")
            _probes_answer(channel)
            stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
            try:
                _infer(stub)
                busy = None
            except grpc.RpcError as exc:
                busy = exc
            report = outcome(attacker)
    assert busy is not None and busy.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_concurrent_rpcs" in busy.details()
    codes = sorted(e.split(":")[0] for e in report["ended"])
    assert codes == ["DEADLINE_EXCEEDED"] * 4 + ["RESOURCE_EXHAUSTED"] * 4, report
