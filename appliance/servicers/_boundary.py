"""The error boundary: our exceptions become gRPC statuses here, and only here.

The outermost layer of every server (``_wrapping``). An ``ApplianceError`` is answered
with the status its class carries (``appliance.errors.status_name``) and its message,
which names what was expected and what arrived; a client's mistake is logged in one
line, without a traceback. Anything else is a bug: logged with its traceback under an
incident id, and answered INTERNAL with that id only, never the internal error text.

Requests are parsed here too, not by gRPC: bytes that are not a valid message get
INVALID_ARGUMENT with the message type expected, instead of gRPC's UNKNOWN. Behind an auth
gate (``defer_parse_errors``), a unary request that does not parse travels on as
``Unparsed``, so the gate checks the caller first and only an admitted caller learns
that its bytes were bad.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from appliance.errors import ApplianceError, InvalidInputError, status_name
from appliance.servicers._wrapping import Call, Context, Layer, Method, Parse, Stream, Unary

log = logging.getLogger("appliance.rpc")


async def _abort(context: Context, method: str, exc: Exception) -> None:
    code = grpc.StatusCode[status_name(exc)]
    if isinstance(exc, ApplianceError):
        if exc.client_error:
            log.info("%s -> %s: %s", method, code.name, exc)
        else:
            log.error("%s -> %s: %s", method, code.name, exc, exc_info=exc)
        await context.abort(code, str(exc))
    incident = uuid.uuid4().hex[:12]
    log.error("%s -> INTERNAL (incident %s)", method, incident, exc_info=exc)
    await context.abort(code, f"internal error (incident {incident}); see the server log")


@dataclass(frozen=True)
class Unparsed:
    """A unary request whose bytes did not parse; whoever admits the call raises ``error``."""

    error: InvalidInputError


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


def _deferring(parse: Parse) -> Parse:
    def parse_or_defer(raw: bytes) -> Any:
        try:
            return parse(raw)
        except InvalidInputError as exc:
            return Unparsed(exc)

    return parse_or_defer


async def _parsed_stream(raw: AsyncIterable[bytes], parse: Parse) -> AsyncIterator[Any]:
    async for item in raw:
        yield parse(item)


class ErrorBoundary(Layer):
    raw_requests = True

    def __init__(self, defer_parse_errors: bool = False) -> None:
        self._defer = defer_parse_errors
        self._parsers: dict[str, Parse] = {}

    def prepare(self, method: Method) -> bool:
        parse = _parser(method.parse)
        if self._defer and not method.request_streaming:
            parse = _deferring(parse)
        self._parsers[method.path] = parse
        return True

    def _request(self, call: Call, raw: Any) -> Any:
        parse = self._parsers[call.method.path]
        return _parsed_stream(raw, parse) if call.method.request_streaming else parse(raw)

    async def unary(self, call: Call, request: Any, proceed: Unary) -> Any:
        try:
            return await proceed(call, self._request(call, request))
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # the one boundary; see module docstring
            await _abort(call.context, call.method.name, exc)

    async def stream(self, call: Call, request: Any, proceed: Stream) -> AsyncIterator[Any]:
        try:
            async for response in proceed(call, self._request(call, request)):
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # the one boundary; see module docstring
            await _abort(call.context, call.method.name, exc)


__all__ = ["ErrorBoundary", "Unparsed"]
