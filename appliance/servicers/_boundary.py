"""The error boundary: our exceptions become gRPC statuses here, and only here.

A server interceptor wraps every RPC handler. An ``ApplianceError`` is answered with the
status its class carries (``appliance.errors``) and its message, which names what was
expected and what arrived; a client's mistake is logged in one line, without a
traceback. Anything else is a bug: logged with its traceback under an incident id, and
answered INTERNAL with that id only, never the internal error text.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc

from appliance.errors import ApplianceError

log = logging.getLogger("appliance.rpc")

Behavior = Callable[..., Any]
Context = grpc.aio.ServicerContext[Any, Any]
# A string: grpc-stubs make RpcMethodHandler generic, the runtime class is not.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


async def _abort(context: Context, method: str, exc: Exception) -> None:
    if isinstance(exc, ApplianceError):
        code = grpc.StatusCode[exc.status.value]
        if exc.client_error:
            log.info("%s -> %s: %s", method, code.name, exc)
        else:
            log.error("%s -> %s: %s", method, code.name, exc, exc_info=exc)
        await context.abort(code, str(exc))
    incident = uuid.uuid4().hex[:12]
    log.error("%s -> INTERNAL (incident %s)", method, incident, exc_info=exc)
    await context.abort(
        grpc.StatusCode.INTERNAL, f"internal error (incident {incident}); see the server log"
    )


def _wrap_unary(method: str, behavior: Behavior) -> Behavior:
    async def wrapper(request: Any, context: Context) -> Any:
        try:
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, method, exc)

    return wrapper


def _wrap_stream(method: str, behavior: Behavior) -> Behavior:
    async def wrapper(request: Any, context: Context) -> AsyncIterator[Any]:
        try:
            async for response in behavior(request, context):
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, method, exc)

    return wrapper


class ErrorBoundary(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method.rsplit("/", 1)[-1]
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(method, handler.unary_unary), **kwargs
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(method, handler.stream_unary), **kwargs
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(method, handler.unary_stream), **kwargs
            )
        stream_stream: Behavior = handler.stream_stream  # type: ignore[assignment]
        return grpc.stream_stream_rpc_method_handler(_wrap_stream(method, stream_stream), **kwargs)


__all__ = ["ErrorBoundary"]
