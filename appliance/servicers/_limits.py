"""The limits layer: ``appliance.limits`` applied to gRPC calls.

Innermost, after the gate, so a peer is known by its caller too. Probes (health Check,
ServerLive, ServerReady) pass uncounted, into the reserve gRPC's own limit keeps for them.
Every other RPC counts against ``max_concurrent_rpcs``; a stream (a streaming request or
response: ModelStreamInfer, health Watch, reflection) also takes a slot of its
connection and of its peer, and a streaming request is ended once idle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from appliance.config import ServerConfig
from appliance.limits import IdleRequests, InFlight, StreamSlots
from appliance.servicers._wrapping import Call, Layer, Method, Stream, Unary

_V2 = "inference.GRPCInferenceService"
PROBES = frozenset({"/grpc.health.v1.Health/Check", f"/{_V2}/ServerLive", f"/{_V2}/ServerReady"})


def peer_host(peer: str) -> str:
    """The client address of a gRPC peer (``ipv4:10.1.2.3:50000`` -> ``ipv4:10.1.2.3``)."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return f"{kind}:{rest.rpartition(':')[0]}"
    return peer


class Limits(Layer):
    """``in_flight`` and ``slots`` may be shared with another transport of the daemon, so
    the caps hold for the daemon as a whole."""

    def __init__(self, in_flight: InFlight, slots: StreamSlots, stream_idle_timeout_s: float):
        self.in_flight = in_flight
        self.slots = slots
        self._idle_s = stream_idle_timeout_s

    @classmethod
    def of(cls, server: ServerConfig) -> Limits:
        return cls(
            InFlight(server.max_concurrent_rpcs),
            StreamSlots(server.max_streams_per_connection, server.max_streams_per_peer),
            server.stream_idle_timeout_s,
        )

    def prepare(self, method: Method) -> bool:
        return method.path not in PROBES

    async def unary(self, call: Call, request: Any, proceed: Unary) -> Any:
        self.in_flight.enter()
        try:
            return await proceed(call, request)
        finally:
            self.in_flight.leave()

    async def stream(self, call: Call, request: Any, proceed: Stream) -> AsyncIterator[Any]:
        connection = call.context.peer()
        peer = peer_host(connection)
        if call.identity is not None:  # with auth on, per caller too
            peer = f"{peer} {call.identity.name}"
        self.in_flight.enter()
        try:
            with self.slots.held(connection, peer):
                if not call.method.request_streaming:
                    async for response in proceed(call, request):
                        yield response
                    return
                requests = IdleRequests(request, self._idle_s)
                try:
                    async for response in proceed(call, requests):
                        requests.touch()
                        yield response
                finally:
                    requests.close()
        finally:
            self.in_flight.leave()


__all__ = ["PROBES", "Limits", "peer_host"]
