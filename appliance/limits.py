"""What a caller may hold open: RPCs in flight, streams per connection and per peer.

A stream costs nothing while idle, which is what makes it a weapon: one client holding
a thousand idle ``ModelStreamInfer`` streams used to fill ``max_concurrent_rpcs`` and turn
every other client away, liveness probes included. So:

- ``InFlight`` counts the requests being served and refuses past
  ``server.max_concurrent_rpcs``, except probes (health checks, ServerLive, ServerReady):
  the transport's own hard limit is set ``PROBE_RESERVE`` higher, so a probe is answered
  while everything else is at its cap;
- ``StreamSlots`` caps the streams open at once on one connection
  (``server.max_streams_per_connection``) and from one peer
  (``server.max_streams_per_peer``: a client address, and with authentication on the
  caller too, so clients behind one gateway address that hold different tokens do not
  share a cap);
- ``IdleRequests`` ends a stream that carried no request and no response for
  ``server.stream_idle_timeout_s``.

Refusals are ``LimitError`` (RESOURCE_EXHAUSTED) and ``StreamIdleError``
(DEADLINE_EXCEEDED), with messages naming the cap and the key that sets it. Everything
here takes plain values (connection and peer names), so the HTTP front door can use it
as the gRPC layer (``appliance.servicers._limits``) does. Event-loop only: no locks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Iterator
from contextlib import contextmanager
from typing import Any

from appliance.errors import LimitError, StreamIdleError

#: RPC slots beyond ``max_concurrent_rpcs`` that only probes can take.
PROBE_RESERVE = 32


class InFlight:
    """Requests being served, against ``server.max_concurrent_rpcs``."""

    def __init__(self, limit: int):
        self.limit = limit
        self.count = 0

    def enter(self) -> None:
        if self.count >= self.limit:
            raise LimitError(
                f"the server is at its limit of {self.limit} requests in flight "
                "(server.max_concurrent_rpcs); retry later"
            )
        self.count += 1

    def leave(self) -> None:
        self.count -= 1


class StreamSlots:
    """Streams open per connection and per peer."""

    def __init__(self, per_connection: int, per_peer: int):
        self.per_connection = per_connection
        self.per_peer = per_peer
        self._connections: dict[str, int] = {}
        self._peers: dict[str, int] = {}

    @contextmanager
    def held(self, connection: str, peer: str) -> Iterator[None]:
        """One stream open for the block; refused at once past either cap."""
        if self._connections.get(connection, 0) >= self.per_connection:
            raise LimitError(
                f"this connection already has {self.per_connection} streams open "
                "(server.max_streams_per_connection); close one or wait"
            )
        if self._peers.get(peer, 0) >= self.per_peer:
            raise LimitError(
                f"this client already has {self.per_peer} streams open "
                "(server.max_streams_per_peer); close one or wait"
            )
        _add(self._connections, connection, 1)
        _add(self._peers, peer, 1)
        try:
            yield
        finally:
            _add(self._connections, connection, -1)
            _add(self._peers, peer, -1)


def _add(counts: dict[str, int], key: str, delta: int) -> None:
    count = counts.get(key, 0) + delta
    if count:
        counts[key] = count
    else:
        counts.pop(key, None)  # a dict of every peer ever seen would only grow


class IdleRequests:
    """A stream's requests, ended with ``StreamIdleError`` once nothing moved either way
    for ``timeout`` seconds. ``touch`` (a response went out) counts as movement, so a
    stream that keeps answering (token streaming) never times out."""

    def __init__(self, requests: AsyncIterable[Any], timeout: float):
        self._requests = aiter(requests)
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._reading: asyncio.Future[tuple[bool, Any]] | None = None
        self.touch()

    def touch(self) -> None:
        self._last = self._loop.time()

    def __aiter__(self) -> IdleRequests:
        return self

    async def __anext__(self) -> Any:
        # One read stays pending across waits: cancelling a half-done read could lose a
        # message, so the read is only cancelled when the stream ends.
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._next())
        while True:
            left = self._last + self._timeout - self._loop.time()
            if left <= 0:
                self.close()
                raise StreamIdleError(
                    f"stream closed after {self._timeout:g} s without a request or a "
                    "response (server.stream_idle_timeout_s); open a new one when needed"
                )
            done, _ = await asyncio.wait((self._reading,), timeout=left)
            if done:
                reading, self._reading = self._reading, None
                more, request = reading.result()
                if not more:
                    raise StopAsyncIteration
                self.touch()
                return request

    async def _next(self) -> tuple[bool, Any]:
        try:
            return True, await anext(self._requests)
        except StopAsyncIteration:
            return False, None

    def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            self._reading = None


__all__ = ["PROBE_RESERVE", "IdleRequests", "InFlight", "StreamSlots"]
