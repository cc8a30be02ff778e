"""The gate in process: the transport-neutral decision, the role table, the gRPC layer.

``Gatekeeper`` is driven with plain values, as the HTTP front door drives it; the
``Gate`` layer runs in a real in-process gRPC server with a servicer of our own, behind
the same ``WrappingInterceptor`` the daemon uses. Audit records go to a list.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from appliance._proto import grpc_service_pb2 as pb
from appliance._proto import grpc_service_pb2_grpc as pb_grpc
from appliance.config import parse_config
from appliance.errors import DisabledError, PermissionDeniedError, UnauthenticatedError
from appliance.security import (
    Authenticator,
    Credentials,
    Gate,
    Gatekeeper,
    current_caller,
    hash_token,
    required_role,
    v2_role,
)
from appliance.servicers import ErrorBoundary, WrappingInterceptor

TOKEN = "gate-test-token-0123456789abcdefghijklmnopqrstu"
BEARER = {"authorization": f"Bearer {TOKEN}"}


class Audit:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, object]]] = []

    def record(self, event: str, **fields: object) -> None:
        self.records.append((event, fields))

    def events(self) -> list[str]:
        return [event for event, _ in self.records]


def gatekeeper(roles: list[str], *, control: bool = True) -> tuple[Gatekeeper, Audit]:
    config = parse_config(
        {
            "auth": {
                "enabled": True,
                "tokens": [{"name": "ris", "sha256": hash_token(TOKEN), "roles": roles}],
            }
        }
    )
    audit = Audit()
    authenticator = Authenticator(config)
    keeper = Gatekeeper(authenticator.identify, audit, required=True, repository_control=control)
    return keeper, audit


def creds(headers: dict[str, str] | None = None) -> Credentials:
    return Credentials(headers=headers or {}, peer="ipv4:10.0.0.7:50000")


def test_roles_of_v2_actions_and_methods() -> None:
    assert v2_role("ModelInfer") == "infer"
    assert v2_role("RepositoryModelUnload") == "admin"
    assert v2_role("ServerLive") is None
    assert v2_role("ModelSomethingNew") == "admin"  # closed by default
    assert required_role("/grpc.health.v1.Health/Check") is None
    assert required_role("/inference.GRPCInferenceService/ModelStreamInfer") == "infer"
    assert required_role("/appliance.admin.v1.Admin/List") == "admin"
    assert required_role("/some.future.Service/Anything") == "admin"


def test_a_token_with_the_role_is_admitted_and_becomes_the_current_caller() -> None:
    keeper, audit = gatekeeper(["infer"])
    identity = keeper.admit("ModelInfer", "infer", lambda: creds(BEARER))
    assert identity.name == "token:ris"
    assert current_caller() is identity
    assert audit.records == []  # an inference grant is not an audit event


def test_refusals_are_raised_and_audited_once_each() -> None:
    keeper, audit = gatekeeper(["infer"])
    with pytest.raises(UnauthenticatedError, match="got none"):
        keeper.admit("ModelInfer", "infer", creds)
    with pytest.raises(PermissionDeniedError, match="needs role 'admin'"):
        keeper.admit("RepositoryModelLoad", "admin", lambda: creds(BEARER))
    assert audit.events() == ["auth.refused", "auth.refused"]
    first, second = (fields for _, fields in audit.records)
    assert (first["caller"], first["status"]) == ("unknown", "UNAUTHENTICATED")
    assert (second["caller"], second["status"]) == ("token:ris", "PERMISSION_DENIED")
    assert first["peer"] == "ipv4:10.0.0.7:50000"


def test_admin_grants_are_audited_and_repository_control_can_be_off() -> None:
    keeper, audit = gatekeeper(["infer", "admin"])
    keeper.admit("RepositoryModelUnload", "admin", lambda: creds(BEARER))
    assert audit.events() == ["auth.granted"]
    off, off_audit = gatekeeper(["infer", "admin"], control=False)
    with pytest.raises(DisabledError, match="repository_control = true"):
        off.admit("RepositoryModelUnload", "admin", lambda: creds(BEARER))
    assert off_audit.records[0][1]["status"] == "FAILED_PRECONDITION"


def test_open_actions_admit_anyone_even_with_bad_credentials() -> None:
    keeper, audit = gatekeeper(["infer"])
    identity = keeper.admit("ServerLive", None, lambda: creds({"authorization": "Bearer x"}))
    assert identity.name == "unauthenticated" and not identity.roles
    assert audit.records == []


def test_with_auth_off_credentials_are_never_read() -> None:
    audit = Audit()
    keeper = Gatekeeper(Authenticator(parse_config({})).identify, audit, required=False)

    def unreadable() -> Credentials:
        raise AssertionError("credentials were built on the hot path")

    assert keeper.admit("ModelInfer", "infer", unreadable).name == "anonymous"


class Echo(pb_grpc.GRPCInferenceServiceServicer):
    """Answers with the caller's name, as the gate admitted it."""

    async def ModelMetadata(self, request: Any, context: Any) -> pb.ModelMetadataResponse:
        return pb.ModelMetadataResponse(name=current_caller().name)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        async for request in request_iterator:
            yield pb.ModelStreamInferResponse(
                infer_response=pb.ModelInferResponse(
                    id=request.id, model_name=current_caller().name
                )
            )


async def _through_the_layers() -> dict[str, Any]:
    keeper, audit = gatekeeper(["infer"])
    server = grpc.aio.server(
        interceptors=[WrappingInterceptor([ErrorBoundary(defer_parse_errors=True), Gate(keeper)])]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Echo(), server)  # type: ignore[no-untyped-call]
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    seen: dict[str, Any] = {}
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
            meta = await stub.ModelMetadata(
                pb.ModelMetadataRequest(), metadata=tuple(BEARER.items()), timeout=10
            )
            seen["unary caller"] = meta.name
            try:
                await stub.ModelMetadata(pb.ModelMetadataRequest(), timeout=10)
            except grpc.aio.AioRpcError as exc:
                seen["no token"] = exc.code()
            call = stub.ModelStreamInfer(
                iter([pb.ModelInferRequest(id="a")]), metadata=tuple(BEARER.items())
            )
            seen["stream"] = [
                (r.infer_response.id, r.infer_response.model_name) async for r in call
            ]
            raw = channel.unary_unary("/inference.GRPCInferenceService/ModelMetadata")
            try:
                await raw(b"\xff\xff not a message", timeout=10)
            except grpc.aio.AioRpcError as exc:
                seen["garbage, no token"] = exc.code()
            # A handler that writes with context.write (health Watch) passes the layers.
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            seen["watch"] = (await watch.read()).status
            watch.cancel()
    finally:
        await server.stop(None)
    seen["audit"] = audit.events()
    return seen


def test_the_gate_layer_admits_refuses_and_passes_the_caller_on() -> None:
    seen = asyncio.run(_through_the_layers())
    assert seen["unary caller"] == "token:ris"
    assert seen["no token"] is grpc.StatusCode.UNAUTHENTICATED
    assert seen["stream"] == [("a", "token:ris")]
    # Credentials first: bytes that do not parse are judged only for an admitted caller.
    assert seen["garbage, no token"] is grpc.StatusCode.UNAUTHENTICATED
    assert seen["watch"] == health_pb2.HealthCheckResponse.SERVING
    assert seen["audit"] == ["auth.refused", "auth.refused"]
