"""The HTTP application: its routes, and the gate every request passes.

Each route is registered wrapped in the gate (as gRPC handlers are wrapped once by the
interceptors), which per request:

1. refuses at once beyond ``server.max_concurrent_rpcs`` requests in flight
   (RESOURCE_EXHAUSTED, 429);
2. admits the caller through the ``Gatekeeper`` (``appliance.security.access``, the
   same decision as the gRPC port's, from ``Authorization: Bearer TOKEN`` or the common
   name of a client certificate the TLS layer verified) for the role the route needs:
   the health probes are open, every other route needs ``infer``; the gatekeeper
   audits refusals (``auth.refused``);
3. runs the route and turns an error into the route's error body
   (``appliance.http.errors``, the one boundary);
4. logs one request line (``appliance.logs.RequestLog``, shared with the gRPC port) from
   what the route described of its request (model, version, tensor names, shapes,
   dtypes; never contents). Inference routes record their outcome themselves through
   the shared ``RequestRecorder`` (request metrics and model statistics), as the gRPC
   observer does.

A path no route matches gets a 404 in the body style of its prefix (OpenAI's under
``/v1``, Triton's elsewhere).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from appliance.config import Role
from appliance.errors import ModelNotFoundError, QueueFullError
from appliance.http.errors import ErrorAnswer, MessageTooLargeError, Style
from appliance.logs import RequestLog, describe_request
from appliance.model import RequestTensor
from appliance.security import Credentials, Gatekeeper, Identity

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Keys a route sets on its request for the gate's log line.
DESCRIBED = web.RequestKey("described", object)
SERVED_VERSION = web.RequestKey("served_version", str)
#: Set by a route that answered but whose client went away (a stream): the logged status.
OUTCOME = web.RequestKey("outcome", str)


@dataclass(frozen=True)
class Described:
    """What a request line may say about a request (``appliance.logs.describe_request``)."""

    model_name: str
    model_version: str = ""
    inputs: Sequence[RequestTensor] | None = None


@dataclass(frozen=True)
class _Served:
    model_version: str


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    name: str  # for logs and audit: the method and path template
    style: Style
    role: Role | None = "infer"  # None: open (health probes)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refused beyond ``limit`` bytes before it is read when it says so."""
    length = request.content_length
    if length is not None and length > limit:
        raise MessageTooLargeError(
            f"request body of {length} bytes is over the limit of {limit} "
            "(server.max_message_bytes)"
        )
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:  # chunked or compressed past the limit
        raise MessageTooLargeError(
            f"request body is over the limit of {limit} bytes (server.max_message_bytes)"
        ) from exc


def _peer(request: web.Request) -> str:
    """The caller's address as gRPC writes a peer (``ipv4:HOST:PORT``)."""
    name = request.transport.get_extra_info("peername") if request.transport else None
    if not name:
        return "unknown"
    host, port = name[0], name[1]
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


def _credentials(request: web.Request) -> Credentials:
    """What the gatekeeper may read of the caller: its authorization header, its address
    and the common name of a client certificate the TLS layer verified."""
    header = request.headers.get("Authorization")
    cert: Any = request.transport.get_extra_info("peercert") if request.transport else None
    names = [v for rdn in (cert or {}).get("subject", ()) for k, v in rdn if k == "commonName"]
    return Credentials(
        headers={} if header is None else {"authorization": header},
        peer=_peer(request),
        common_name=names[0] if names else None,
    )


class Gate:
    """Admission, authentication, the error boundary and the request log of every route."""

    def __init__(self, gatekeeper: Gatekeeper, requests: RequestLog, max_in_flight: int):
        self.gatekeeper = gatekeeper
        self.requests = requests
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    def wrap(self, route: Route) -> Handler:
        async def gated(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            caller, status = "unknown", "OK"
            try:
                if self.in_flight >= self.max_in_flight:
                    raise QueueFullError(
                        f"{self.in_flight} requests in flight, the limit of this port "
                        "(server.max_concurrent_rpcs); retry shortly"
                    )
                self.in_flight += 1
                try:
                    caller = self._admit(request, route).name
                    response = await route.handler(request)
                    status = request.get(OUTCOME, status)
                    return response
                finally:
                    self.in_flight -= 1
            except asyncio.CancelledError:  # the client went away
                status = "CANCELLED"
                raise
            except Exception as exc:  # the one boundary; see appliance.http.errors
                answer = ErrorAnswer(exc, route.name, route.style)
                status = answer.code
                return web.Response(
                    status=answer.status,
                    body=answer.body,
                    headers=answer.headers,
                    content_type="application/json",
                )
            finally:
                self._log(request, route, caller, status, time.perf_counter() - started)

        return gated

    def _admit(self, request: web.Request, route: Route) -> Identity:
        return self.gatekeeper.admit(route.name, route.role, lambda: _credentials(request))

    def _log(
        self, request: web.Request, route: Route, caller: str, status: str, seconds: float
    ) -> None:
        quiet = route.role is None
        if not self.requests.wants(status, quiet=quiet):
            return  # the common case on a busy box: no line, no peer lookup
        served = request.get(SERVED_VERSION)
        described = request.get(DESCRIBED)
        if described is None and "name" in request.match_info:  # refused before the route ran
            match = request.match_info
            described = Described(match["name"], match.get("version", ""))
        self.requests.log(
            rpc=route.name,
            fields=describe_request(described, _Served(served) if served else None),
            caller=caller,
            peer=_peer(request),
            status=status,
            seconds=seconds,
            quiet=quiet,
        )

    def not_found(self) -> Route:
        """The route of last resort: any method, any path no other route matched."""

        async def handler(request: web.Request) -> web.StreamResponse:
            raise ModelNotFoundError(f"no route {request.method} {request.path}")

        return Route("*", "/{tail:.*}", handler, "unmatched", "v2", role=None)


def build_app(gate: Gate, routes: Sequence[Route], max_body: int) -> web.Application:
    # client_max_size bounds bodies that do not say their length (chunked).
    app = web.Application(client_max_size=max_body)
    for route in routes:
        app.router.add_route(route.method, route.path, gate.wrap(route))
    fallback = gate.not_found()
    openai = Route(fallback.method, "/v1/{tail:.*}", fallback.handler, "unmatched", "openai", None)
    app.router.add_route(openai.method, openai.path, gate.wrap(openai))
    app.router.add_route(fallback.method, fallback.path, gate.wrap(fallback))
    return app


__all__ = [
    "DESCRIBED",
    "OUTCOME",
    "SERVED_VERSION",
    "Described",
    "Gate",
    "Route",
    "build_app",
    "read_body",
]
