"""The gate: every RPC is identified, authorized, audited if refused, and logged.

A server interceptor placed inside ``ErrorBoundary`` (so its refusals become statuses in
that one place). Per RPC it:

1. finds the role the method needs (``required_role``): health, reflection, ServerLive
   and ServerReady are open (probes and load balancers call them anonymously);
   RepositoryModelLoad/Unload and the admin service need ``admin``; every other V2
   method needs ``infer``; a method this table does not know needs ``admin`` (closed
   by default, so a service added later is not open by accident);
2. identifies the caller (``Authenticator``) and checks the role; a refusal raises
   UNAUTHENTICATED or PERMISSION_DENIED and writes an audit record;
3. logs one request line (``appliance.logs.RequestLog``) with model, version, shapes,
   dtypes, latency, caller and status, never tensor contents.

The caller's identity is available to the servicer while the RPC runs
(``identity_from_context``), for the audit records of admin actions.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeAlias

import grpc

from appliance.audit import AuditLog
from appliance.config import Role
from appliance.errors import ApplianceError, NotReadyError
from appliance.logs import RequestLog
from appliance.security.identity import Authenticator, Identity, authorize
from appliance.servicers._boundary import Unparsed
from appliance.servicers._wrapping import WrappingInterceptor

Behavior = Callable[..., Any]
Context = grpc.aio.ServicerContext[Any, Any]
# A string: grpc-stubs make RpcMethodHandler generic, the runtime class is not.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"

_V2 = "inference.GRPCInferenceService"
_OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
_OPEN_METHODS = frozenset({f"/{_V2}/ServerLive", f"/{_V2}/ServerReady"})
_ADMIN_METHODS = frozenset({f"/{_V2}/RepositoryModelLoad", f"/{_V2}/RepositoryModelUnload"})
_ADMIN_SERVICES = frozenset({"appliance.admin.v1.Admin"})

_identity: contextvars.ContextVar[Identity] = contextvars.ContextVar("identity")


def required_role(method: str) -> Role | None:
    """The role a full method name (``/package.Service/Method``) needs; None: open."""
    service = method.strip("/").rpartition("/")[0]
    if method in _OPEN_METHODS or service in _OPEN_SERVICES:
        return None
    if method in _ADMIN_METHODS or service in _ADMIN_SERVICES:
        return "admin"
    if service == _V2:
        return "infer"
    return "admin"


def identity_from_context(context: Context | None = None) -> Identity:
    """The caller of the RPC in progress, as the gate identified it.

    The identity lives in the RPC's task context, so ``context`` is optional; servicers
    pass theirs for readability.
    """
    try:
        return _identity.get()
    except LookupError:
        raise NotReadyError("no caller identity: this RPC did not pass the gate") from None


def _status_of(exc: BaseException, context: Context) -> str:
    if isinstance(exc, ApplianceError):
        return exc.status.value
    if isinstance(exc, grpc.aio.AbortError):
        code = context.code()
        return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    return "INTERNAL"


class _Call:
    """One RPC passing the gate: the checks before it, the log line after it."""

    def __init__(self, gate: Gate, method: str, context: Context):
        self.gate = gate
        self.method = method
        self.name = method.rsplit("/", 1)[-1]
        self.context = context
        self.started = time.perf_counter()
        self.identity: Identity | None = None
        self.role = required_role(method)

    def _identify(self) -> Identity:
        if not self.gate.authenticator.required:  # no metadata or TLS lookups per call
            return Identity.anonymous()
        return self.gate.authenticator.identify(
            self.context.invocation_metadata() or (), self.context.auth_context()
        )

    def admit(self) -> None:
        role = self.role
        if role is None:  # open: a probe with bad credentials still gets its answer
            try:
                self.identity = self._identify()
            except ApplianceError:
                self.identity = Identity("unauthenticated", frozenset())
            _identity.set(self.identity)
            return
        try:
            identity = self.identity = self._identify()
            authorize(identity, role, self.name)
        except ApplianceError as exc:
            self.gate.audit.record(
                "auth.refused",
                action=self.name,
                caller=self.identity.name if self.identity else "unknown",
                peer=self.context.peer(),
                status=exc.status.value,
                reason=str(exc),
            )
            raise
        _identity.set(identity)
        if role == "admin":
            self.gate.audit.record(
                "auth.granted", action=self.name, caller=identity.name, peer=self.context.peer()
            )

    def done(self, request: Any, status: str, response: Any = None) -> None:
        if not self.gate.requests.wants(status, quiet=self.role is None):
            return  # the common case on a busy box: no line, so no peer lookup either
        self.gate.requests.log(
            rpc=self.name,
            request=request,
            response=response,
            caller=self.identity.name if self.identity else "unknown",
            peer=self.context.peer(),
            status=status,
            seconds=time.perf_counter() - self.started,
            quiet=self.role is None,
        )


class Gate(WrappingInterceptor):
    def __init__(self, authenticator: Authenticator, audit: AuditLog, requests: RequestLog):
        super().__init__()
        self.authenticator = authenticator
        self.audit = audit
        self.requests = requests

    def _wrap(self, method: str, handler: Handler) -> Handler:
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary, streaming_request=False), **kwargs
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(method, handler.stream_unary, streaming_request=True), **kwargs
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, handler.unary_stream, streaming_request=False), **kwargs
            )
        stream_stream: Behavior = handler.stream_stream  # type: ignore[assignment]
        return grpc.stream_stream_rpc_method_handler(
            self._stream(method, stream_stream, streaming_request=True), **kwargs
        )

    def _unary(self, method: str, behavior: Behavior, streaming_request: bool) -> Behavior:
        async def gated(request: Any, context: Context) -> Any:
            call = _Call(self, method, context)
            described = None if streaming_request or isinstance(request, Unparsed) else request
            status, response = "OK", None
            try:
                call.admit()
                if isinstance(request, Unparsed):  # the caller is admitted: now say why
                    raise request.error
                response = await behavior(request, context)
                return response
            except BaseException as exc:
                status = _status_of(exc, context)
                raise
            finally:
                call.done(described, status, response)

        return gated

    def _stream(self, method: str, behavior: Behavior, streaming_request: bool) -> Behavior:
        async def gated(request: Any, context: Context) -> AsyncIterator[Any]:
            call = _Call(self, method, context)
            described = None if streaming_request or isinstance(request, Unparsed) else request
            status = "OK"
            try:
                call.admit()
                if isinstance(request, Unparsed):
                    raise request.error
                async for response in behavior(request, context):
                    yield response
            except BaseException as exc:
                status = _status_of(exc, context)
                raise
            finally:
                call.done(described, status)

        return gated


__all__ = ["Gate", "identity_from_context", "required_role"]
