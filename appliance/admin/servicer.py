"""``appliance.admin.v1.Admin``: thin RPC methods over the lifecycle.

Each method converts the request (``_convert``), calls ``appliance.lifecycle`` with the
caller the admin gate admitted (``current_caller``) and converts back. Neither errors nor
authorisation are handled here: the gate in front refuses any caller without the admin
role, the shared ``ErrorBoundary`` maps errors to status codes, and the lifecycle
audits each action.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from appliance._proto import admin_pb2 as pb
from appliance._proto import admin_pb2_grpc as pb_grpc
from appliance.admin import _convert as convert
from appliance.errors import NotReadyError
from appliance.lifecycle import DaemonStatus, Lifecycle
from appliance.routing.control import ShadowControl
from appliance.security.access import current_caller

Context = grpc.aio.ServicerContext[Any, Any]


def _who() -> str:
    return current_caller().name


class AdminServicer(pb_grpc.AdminServicer):
    def __init__(
        self,
        lifecycle: Lifecycle,
        status: Callable[[], DaemonStatus],
        shadows: ShadowControl | None = None,
    ):
        self._lifecycle = lifecycle
        self._status = status
        self._shadows = shadows

    async def Upload(
        self, request_iterator: AsyncIterator[pb.UploadRequest], context: Context
    ) -> pb.UploadResponse:
        who = _who()
        # A stalled client is refused (DEADLINE_EXCEEDED) instead of holding staging.
        requests = self._lifecycle.upload_messages(request_iterator)
        header = await convert.upload_header_from_proto(requests)
        result = await self._lifecycle.push(
            header.filename,
            header.total_size,
            convert.upload_chunks_from_proto(requests),
            activate=header.activate,
            allow_downgrade=header.allow_downgrade,
            who=who,
        )
        return convert.push_result_to_proto(result)

    async def List(self, request: pb.ListRequest, context: Context) -> pb.ListResponse:
        return convert.listing_to_proto(self._lifecycle.listing(request.name))

    async def Activate(self, request: pb.ActivateRequest, context: Context) -> pb.ActivateResponse:
        result = await self._lifecycle.activate(
            request.name,
            request.version,
            allow_downgrade=request.allow_downgrade,
            who=_who(),
        )
        return convert.switch_result_to_proto(result)

    async def Rollback(self, request: pb.RollbackRequest, context: Context) -> pb.ActivateResponse:
        result = await self._lifecycle.rollback(request.name, who=_who())
        return convert.switch_result_to_proto(result)

    async def Remove(self, request: pb.RemoveRequest, context: Context) -> pb.RemoveResponse:
        await self._lifecycle.remove(request.name, request.version, who=_who())
        return pb.RemoveResponse(name=request.name, version=request.version)

    async def Status(self, request: pb.StatusRequest, context: Context) -> pb.StatusResponse:
        return convert.status_to_proto(self._status())

    async def Evaluate(self, request: pb.EvaluateRequest, context: Context) -> pb.EvaluateResponse:
        report = await self._lifecycle.evaluate(request.name, request.version, who=_who())
        return convert.evaluation_to_proto(report)

    # -- shadow traffic ------------------------------------------------------------

    def _shadow_control(self) -> ShadowControl:
        if self._shadows is None:
            raise NotReadyError("shadow traffic is not available on this daemon")
        return self._shadows

    async def Shadow(self, request: pb.ShadowRequest, context: Context) -> pb.ShadowResponse:
        control = self._shadow_control()
        if request.stop:
            shadow = await control.stop(request.name, who=_who())
        else:
            sample = request.sample or 1.0  # unset: every request
            shadow = await control.start(request.name, request.version, sample, who=_who())
        serving = control.serving_version(shadow.name)
        return pb.ShadowResponse(shadow=convert.shadow_to_proto(shadow, serving))

    async def ListShadows(
        self, request: pb.ListShadowsRequest, context: Context
    ) -> pb.ListShadowsResponse:
        control = self._shadow_control()
        shadows = [
            convert.shadow_to_proto(s, control.serving_version(s.name)) for s in control.shadows()
        ]
        return pb.ListShadowsResponse(shadows=shadows)
