"""A server interceptor that wraps each registered handler once, not on every call.

gRPC calls ``intercept_service`` for every RPC; the handler it finds for a method is the
same object each time, so the wrapped handler is built on the first call and reused.
Subclasses say how to wrap (``_wrap``); the error boundary and the auth gate build on it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:  # the runtime class is not generic; grpc-stubs makes it so
    Handler = grpc.RpcMethodHandler[Any, Any]


class WrappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self) -> None:
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

    def _wrap(self, method: str, handler: Handler) -> Handler:
        """``method`` is the full name, ``/package.Service/Method``."""
        raise NotImplementedError


__all__ = ["WrappingInterceptor"]
