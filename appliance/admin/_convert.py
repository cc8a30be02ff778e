"""All protobuf conversion for the admin service: ``*_from_proto`` / ``*_to_proto``.

The lifecycle sees plain values and dataclasses; this is the only module of the admin
service that knows the ``appliance.admin.v1`` message layout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from appliance._proto import admin_pb2 as pb
from appliance.errors import InvalidInputError
from appliance.lifecycle import (
    DaemonStatus,
    ModelListing,
    ModelStatus,
    PushResult,
    SwitchResult,
)


@dataclass(frozen=True)
class UploadHeader:
    filename: str
    total_size: int
    activate: bool
    allow_downgrade: bool


async def upload_header_from_proto(requests: AsyncIterator[pb.UploadRequest]) -> UploadHeader:
    first = await anext(requests, None)
    if first is None or first.WhichOneof("part") != "header":
        got = "nothing" if first is None else f"a {first.WhichOneof('part') or 'empty'} message"
        raise InvalidInputError(f"Upload: expected a header as the first message, got {got}")
    h = first.header
    return UploadHeader(h.filename, h.total_size, h.activate, h.allow_downgrade)


async def upload_chunks_from_proto(
    requests: AsyncIterator[pb.UploadRequest],
) -> AsyncIterator[bytes]:
    async for request in requests:
        if request.WhichOneof("part") != "chunk":
            raise InvalidInputError("Upload: expected only chunks after the header, got a header")
        yield request.chunk


def push_result_to_proto(result: PushResult) -> pb.UploadResponse:
    return pb.UploadResponse(
        name=result.name,
        version=result.version,
        digest=result.digest,
        activated=result.activated,
        previous_version=result.previous_version or 0,
        seconds=result.seconds,
    )


def switch_result_to_proto(result: SwitchResult) -> pb.ActivateResponse:
    return pb.ActivateResponse(
        name=result.name,
        version=result.version,
        previous_version=result.previous_version or 0,
        seconds=result.seconds,
    )


def listing_to_proto(models: list[ModelListing]) -> pb.ListResponse:
    response = pb.ListResponse()
    for m in models:
        info = response.models.add(
            name=m.name,
            active_version=m.active_version or 0,
            highest_activated=m.highest_activated,
            rollback_versions=m.rollback_versions,
        )
        for v in m.versions:
            info.versions.add(
                version=v.version,
                on_disk=v.on_disk,
                loaded=v.loaded,
                active=v.active,
                digest=v.digest,
                installed_at=v.installed_at,
            )
    return response


def _model_status_to_proto(m: ModelStatus) -> pb.ModelStatus:
    f = m.figures
    return pb.ModelStatus(
        name=m.name,
        active_version=m.active_version or 0,
        versions_on_disk=m.versions_on_disk,
        versions_loaded=m.versions_loaded,
        state=m.state,
        request_rate=f.request_rate,
        latency_p50_ms=f.latency_p50_ms,
        latency_p99_ms=f.latency_p99_ms,
        drift_psi=f.drift_psi,
        drift_state=f.drift_state,
        generative=f.generative,
        tokens_per_s=f.tokens_per_s,
        ttft_p50_ms=f.ttft_p50_ms,
        ttft_p99_ms=f.ttft_p99_ms,
    )


def status_to_proto(status: DaemonStatus) -> pb.StatusResponse:
    return pb.StatusResponse(
        state=status.state,
        execution_providers=status.execution_providers,
        models=[_model_status_to_proto(m) for m in status.models],
        server_version=status.server_version,
        uptime_s=status.uptime_s,
        cache_hits=status.figures.cache_hits,
        cache_misses=status.figures.cache_misses,
    )
