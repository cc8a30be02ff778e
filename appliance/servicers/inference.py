"""``inference.GRPCInferenceService``: thin RPC methods over the model manager.

Each method converts the request (``_convert``), calls the core, converts back. Errors
are not handled here: ``_boundary.ErrorBoundary`` maps them to status codes. The one
exception is ModelStreamInfer, where the protocol carries a failed request's error in
the stream (``error_message``) so one bad request does not end the stream. Nothing is
recorded here either: the observer layer (``_observer``) counts every request, and the
limits layer (``_limits``) caps and times out streams.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from appliance import __version__
from appliance._proto import grpc_service_pb2 as pb
from appliance._proto import grpc_service_pb2_grpc as pb_grpc
from appliance.clip import quoted
from appliance.errors import ApplianceError
from appliance.generative import GenerativeVersion, parse_request
from appliance.manager import ModelManager
from appliance.servicers import _convert as convert
from appliance.servicers._interleave import Interleaved

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]

SERVER_NAME = "appliance"
EXTENSIONS = ("model_repository", "statistics", "model_configuration", "schedule_policy")


def deadline_of(context: Context) -> float | None:
    """The client's deadline on the ``time.monotonic`` clock, if it set one."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, manager: ModelManager, is_ready: Callable[[], bool]):
        self._manager = manager
        self._is_ready = is_ready

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._is_ready())

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        try:
            ready = self._manager.get(request.name, request.version).ready
        except ApplianceError:
            ready = False
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name=SERVER_NAME, version=__version__, extensions=EXTENSIONS
        )

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        model = self._manager.get(request.name, request.version)
        versions = [m.version for m in self._manager.loaded() if m.name == model.name]
        return convert.model_metadata_to_proto(model, versions)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        tensors = convert.request_tensors_from_proto(request)
        model, outputs = await self._manager.infer(
            request.model_name,
            request.model_version,
            tensors,
            convert.requested_outputs_from_proto(request),
            deadline_of(context),
        )
        return convert.infer_response_to_proto(model, request.id, outputs)

    async def ModelStreamInfer(
        self,
        request_iterator: AsyncIterator[pb.ModelInferRequest],
        context: Context,
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        def answer(request: pb.ModelInferRequest) -> AsyncIterator[pb.ModelStreamInferResponse]:
            return self._answer_in_stream(request, context)

        streams = Interleaved(answer, self._generates)
        async for response in streams.responses(request_iterator):
            yield response

    def _generates(self, request: pb.ModelInferRequest) -> bool:
        """A request answered over time (a generation), run beside the stream's others."""
        try:
            model = self._manager.get(request.model_name, request.model_version)
        except ApplianceError:
            return False
        return isinstance(model, GenerativeVersion)

    async def _answer_in_stream(
        self, request: pb.ModelInferRequest, context: Context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """The responses to one message; a refused one answers with its error."""
        try:
            model = self._manager.get(request.model_name, request.model_version)
            if not isinstance(model, GenerativeVersion):
                answer = await self.ModelInfer(request, context)
                yield pb.ModelStreamInferResponse(infer_response=answer)
                return
            async for response in self._generate(model, request, context):
                yield response
        except ApplianceError as exc:
            log.info("stream request for model %s refused: %s", quoted(request.model_name), exc)
            yield convert.stream_error_to_proto(exc, request)

    async def _generate(
        self, model: GenerativeVersion, request: pb.ModelInferRequest, context: Context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Decoupled: one response per piece, the last one final (or an empty final one
        after it, when the request asks for that)."""
        parsed = parse_request(
            convert.request_tensors_from_proto(request),
            convert.requested_outputs_from_proto(request),
        )
        empty_final = convert.wants_empty_final_response(request)
        async for outputs, final in model.v2_stream(parsed, deadline_of(context)):
            if not final or not empty_final:
                yield convert.piece_response_to_proto(model, request.id, outputs, final)
                continue
            if not _nothing_new(outputs):
                yield convert.piece_response_to_proto(model, request.id, outputs, False)
            yield convert.empty_final_response_to_proto(model, request.id)

    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: Context
    ) -> pb.ModelConfigResponse:
        return convert.model_config_to_proto(self._manager.get(request.name, request.version))

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: Context
    ) -> pb.ModelStatisticsResponse:
        if request.name:
            if request.version:
                models = [self._manager.get(request.name, request.version)]
            else:
                self._manager.get(request.name)  # NOT_FOUND for an unknown name
                models = [m for m in self._manager.loaded() if m.name == request.name]
        else:
            models = self._manager.loaded()
        return convert.statistics_to_proto(models)

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Context
    ) -> pb.RepositoryIndexResponse:
        return convert.index_to_proto(self._manager.index(), request.ready)

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> pb.RepositoryModelLoadResponse:
        await self._manager.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> pb.RepositoryModelUnloadResponse:
        await self._manager.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()


def _nothing_new(outputs: dict[str, Any]) -> bool:
    """A last piece with no text and nothing else asked for: the empty final response
    says all it would."""
    text = outputs.get("text_output")
    return set(outputs) == {"text_output"} and text is not None and text.reshape(-1)[0] == b""
