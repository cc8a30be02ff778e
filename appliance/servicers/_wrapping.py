"""One server interceptor, one handler lookup per method, and a layer per concern.

gRPC calls ``intercept_service`` for every RPC, and the handler it finds for a method is
the same object each time, so the layered handler is built on a method's first call and
reused. gRPC has four kinds of handler (a unary or streaming request, times a unary or
streaming response); they are told apart here, once, and every concern sees a call
through two hooks only: ``Layer.unary`` (one response) and ``Layer.stream`` (a response
iterator), whatever the request side is. Layers run outermost first, in the order given,
as Starlette runs its middleware: the error boundary, then observing, the gate, the
limits, then the servicer. A layer may stay out of a method entirely
(``Layer.prepare``), so a concern costs nothing where it has nothing to do.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from appliance.security.identity import Identity

    # The runtime class is not generic; grpc-stubs makes it so.
    Handler = grpc.RpcMethodHandler[Any, Any]

Context = grpc.aio.ServicerContext[Any, Any]
Parse = Callable[[bytes], Any]


@dataclass(frozen=True)
class Method:
    """What a layer may know of a method before any call: its names and its kind."""

    path: str  # /package.Service/Method
    service: str
    name: str
    request_streaming: bool
    response_streaming: bool
    #: The handler's own deserializer (None: the request stays bytes).
    parse: Parse | None = None

    @classmethod
    def of(cls, path: str, handler: Handler) -> Method:
        service, _, name = path.strip("/").rpartition("/")
        return cls(
            path=path,
            service=service,
            name=name,
            request_streaming=bool(handler.request_streaming),
            response_streaming=bool(handler.response_streaming),
            parse=handler.request_deserializer,
        )

    @property
    def streams(self) -> bool:
        """A long-lived call: its request or its response is a stream."""
        return self.request_streaming or self.response_streaming


class Call:
    """One RPC as the layers see it; a layer leaves here what later ones need."""

    __slots__ = ("context", "identity", "method")

    def __init__(self, method: Method, context: Context):
        self.method = method
        self.context = context
        #: Set by the gate once the caller is admitted.
        self.identity: Identity | None = None


Unary = Callable[[Call, Any], Awaitable[Any]]
Stream = Callable[[Call, Any], AsyncIterator[Any]]


class Layer:
    """One concern around every RPC. The defaults pass the call on unchanged."""

    #: True for the one layer that takes the request's bytes and parses them itself (the
    #: error boundary, so a request that does not parse is answered like any mistake);
    #: it must come first.
    raw_requests = False

    def prepare(self, method: Method) -> bool:
        """Called once per method, when its handler is first built; False keeps this
        layer out of that method's calls."""
        return True

    async def unary(self, call: Call, request: Any, proceed: Unary) -> Any:
        return await proceed(call, request)

    def stream(self, call: Call, request: Any, proceed: Stream) -> AsyncIterator[Any]:
        return proceed(call, request)


class WrappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """The layers, as gRPC's one interceptor."""

    def __init__(self, layers: Sequence[Layer]):
        if any(layer.raw_requests for layer in layers[1:]):
            raise ValueError("the layer that parses requests must come first")
        self._layers = tuple(layers)
        self._wrapped: dict[int, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(details)
        if handler is None:
            return None
        cached = self._wrapped.get(id(handler))
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(details.method, handler)
        self._wrapped[id(handler)] = (handler, wrapped)  # holds handler: its id stays unique
        return wrapped

    def _wrap(self, path: str, handler: Handler) -> Handler:
        method = Method.of(path, handler)
        layers = [layer for layer in self._layers if layer.prepare(method)]
        if not layers:
            return handler
        behavior: Callable[..., Any] = (
            handler.unary_unary
            or handler.stream_unary
            or handler.unary_stream
            or handler.stream_stream  # type: ignore[assignment]
        )
        kwargs = {
            "request_deserializer": None if layers[0].raw_requests else method.parse,
            "response_serializer": handler.response_serializer,
        }
        entry: Callable[..., Any]
        if method.response_streaming:
            entry = _stream_entry(method, layers, behavior)
            factory = (
                grpc.stream_stream_rpc_method_handler
                if method.request_streaming
                else grpc.unary_stream_rpc_method_handler
            )
        else:
            entry = _unary_entry(method, layers, behavior)
            factory = (
                grpc.stream_unary_rpc_method_handler
                if method.request_streaming
                else grpc.unary_unary_rpc_method_handler
            )
        return factory(entry, **kwargs)


def _unary_entry(
    method: Method, layers: Sequence[Layer], behavior: Callable[..., Any]
) -> Callable[..., Awaitable[Any]]:
    async def servicer(call: Call, request: Any) -> Any:
        return await behavior(request, call.context)

    chain: Unary = servicer
    for layer in reversed(layers):  # a partial, not a closure: no extra frame per layer
        chain = functools.partial(layer.unary, proceed=chain)

    async def entry(request: Any, context: Context) -> Any:
        return await chain(Call(method, context), request)

    return entry


def _stream_entry(
    method: Method, layers: Sequence[Layer], behavior: Callable[..., Any]
) -> Callable[..., AsyncIterator[Any]]:
    async def servicer(call: Call, request: Any) -> AsyncIterator[Any]:
        produced = behavior(request, call.context)
        if inspect.isawaitable(produced):  # a handler that writes with context.write
            await produced
            return
        async for response in produced:
            yield response

    chain: Stream = servicer
    for layer in reversed(layers):
        chain = functools.partial(layer.stream, proceed=chain)

    # An async generator function: gRPC sends what it yields (a plain function returning
    # an iterator would be taken for a synchronous handler).
    async def entry(request: Any, context: Context) -> AsyncIterator[Any]:
        async for response in chain(Call(method, context), request):
            yield response

    return entry


__all__ = ["Call", "Layer", "Method", "Stream", "Unary", "WrappingInterceptor"]
