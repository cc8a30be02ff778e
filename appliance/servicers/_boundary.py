"""The error boundary: our exceptions become gRPC statuses here, and only here.

A server interceptor wraps every RPC handler. An ``ApplianceError`` is answered with the
status its class carries (``appliance.errors``) and its message, which names what was
expected and what arrived; a client's mistake is logged in one line, without a
traceback. Anything else is a bug: logged with its traceback under an incident id, and
answered INTERNAL with that id only, never the internal error text.

Requests are parsed here too, not by gRPC: bytes that are not a valid message get
INVALID_ARGUMENT with the message type expected, instead of gRPC's UNKNOWN. Behind an auth
gate (``defer_parse_errors``), a unary request that does not parse travels on as
``Unparsed``, so the gate checks the caller first and only an admitted caller learns
that its bytes were bad.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError

from appliance.errors import ApplianceError, InvalidInputError
from appliance.servicers._wrapping import WrappingInterceptor

log = logging.getLogger("appliance.rpc")

Behavior = Callable[..., Any]
Parse = Callable[[bytes], Any]
Context = grpc.aio.ServicerContext[Any, Any]
if TYPE_CHECKING:  # the runtime class is not generic; grpc-stubs makes it so
    Handler = grpc.RpcMethodHandler[Any, Any]


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


@dataclass(frozen=True)
class Unparsed:
    """A unary request whose bytes did not parse; whoever admits the call raises ``error``."""

    error: InvalidInputError


def _deferring(parse: Parse) -> Parse:
    def parse_or_defer(raw: bytes) -> Any:
        try:
            return parse(raw)
        except InvalidInputError as exc:
            return Unparsed(exc)

    return parse_or_defer


def _parser(deserializer: Parse | None) -> Parse:
    if deserializer is None:
        return lambda raw: raw
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    expected = getattr(descriptor, "full_name", "the request message")

    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError as exc:
            raise InvalidInputError(
                f"expected a serialized {expected}, got {len(raw)} bytes that do not parse"
            ) from exc

    return parse


async def _parsed_stream(raw: AsyncIterable[bytes], parse: Parse) -> AsyncIterator[Any]:
    async for item in raw:
        yield parse(item)


def _wrap_unary(method: str, behavior: Behavior, parse: Parse, streaming_in: bool) -> Behavior:
    async def wrapper(request: Any, context: Context) -> Any:
        try:
            parsed = _parsed_stream(request, parse) if streaming_in else parse(request)
            return await behavior(parsed, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # the one boundary; see module docstring
            await _abort(context, method, exc)

    return wrapper


def _wrap_stream(method: str, behavior: Behavior, parse: Parse, streaming_in: bool) -> Behavior:
    async def wrapper(request: Any, context: Context) -> AsyncIterator[Any]:
        try:
            parsed = _parsed_stream(request, parse) if streaming_in else parse(request)
            async for response in behavior(parsed, context):
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # the one boundary; see module docstring
            await _abort(context, method, exc)

    return wrapper


class ErrorBoundary(WrappingInterceptor):
    def __init__(self, defer_parse_errors: bool = False) -> None:
        super().__init__()
        self._defer = defer_parse_errors

    def _wrap(self, method: str, handler: Handler) -> Handler:
        method = method.rsplit("/", 1)[-1]
        parse = _parser(handler.request_deserializer)
        unary_parse = _deferring(parse) if self._defer else parse
        serializer = {"response_serializer": handler.response_serializer}
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(method, handler.unary_unary, unary_parse, False), **serializer
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(method, handler.stream_unary, parse, True), **serializer
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(method, handler.unary_stream, unary_parse, False), **serializer
            )
        stream_stream: Behavior = handler.stream_stream  # type: ignore[assignment]
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream(method, stream_stream, parse, True), **serializer
        )


__all__ = ["ErrorBoundary", "Unparsed"]
