"""The ceiling for a Python daemon: a bare grpc.aio V2 servicer that only runs the session.

No validation, no batching, no thread hand-off: ModelInfer decodes the raw inputs, calls
``session.run`` on the event loop and returns raw outputs. Used by the benchmarks as the
reference our daemon is measured against. ``python _bare_server.py MODEL.onnx PORT``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort

from appliance._proto import grpc_service_pb2 as pb
from appliance._proto import grpc_service_pb2_grpc as pb_grpc
from appliance.tensors import ORT_TO_V2, V2_TO_NUMPY


class BareServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, path: str):
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.outputs = [(o.name, ORT_TO_V2[o.type]) for o in self.session.get_outputs()]

    async def ServerReady(self, request: Any, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=True)

    async def ModelInfer(self, request: Any, context: Any) -> pb.ModelInferResponse:
        feeds = {
            t.name: np.frombuffer(raw, V2_TO_NUMPY[t.datatype]).reshape(t.shape)
            for t, raw in zip(request.inputs, request.raw_input_contents, strict=True)
        }
        results = self.session.run(None, feeds)
        response = pb.ModelInferResponse(model_name=request.model_name)
        for (name, datatype), array in zip(self.outputs, results, strict=True):
            response.outputs.add(name=name, datatype=datatype, shape=array.shape)
            response.raw_output_contents.append(array.tobytes())
        return response


async def main(path: str, port: int) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 2**20)])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(BareServicer(path), server)  # type: ignore[no-untyped-call]
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
