"""The gate: the gRPC adapter of ``Gatekeeper``, one layer of every server.

Per RPC it finds the role the method needs (``required_role``, worked out once per
method), builds the caller's ``Credentials`` from gRPC's metadata, peer and TLS auth
context (only when authentication is on), and asks the gatekeeper to admit the call;
refusals are raised, so the error boundary answers them, and audited by the gatekeeper.
A request that did not parse (``Unparsed``) is refused as such only once its caller is
admitted.

On the inference port: health, reflection, ServerLive and ServerReady are open; every
other V2 method needs the role in ``access.V2_ROLES``; outcome feedback
(``appliance.feedback.v1.Feedback``) is an inference call and needs ``infer``; the admin
service and any method this table does not know need ``admin`` (closed by default, so a
service added later is not open by accident). The admin server runs the same layer with
every method needing ``admin`` (``admin_only``): an admin RPC that forgets a check is
closed, not open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from appliance.config import Role
from appliance.security.access import Gatekeeper, v2_role
from appliance.security.identity import Credentials
from appliance.servicers._boundary import Unparsed
from appliance.servicers._wrapping import Call, Context, Layer, Method, Stream, Unary

_V2 = "inference.GRPCInferenceService"
_FEEDBACK = "appliance.feedback.v1.Feedback"
_OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)


def required_role(method: str) -> Role | None:
    """The role a full method name (``/package.Service/Method``) needs; None: open."""
    service, _, name = method.strip("/").rpartition("/")
    if service in _OPEN_SERVICES:
        return None
    if service == _V2:
        return v2_role(name)
    if service == _FEEDBACK:
        return "infer"
    return "admin"


def admin_only(method: str) -> Role | None:
    """Every method of the admin server needs the admin role."""
    return "admin"


def grpc_credentials(context: Context) -> Credentials:
    """The caller's metadata, peer and verified certificate, as plain values."""
    headers: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if key not in headers:  # the first of a repeated header, as before
            headers[key] = value.decode(errors="replace") if isinstance(value, bytes) else value
    auth = context.auth_context()
    return Credentials(
        headers=headers,
        peer=context.peer(),
        common_name=_first(auth.get("x509_common_name")),
        subject=_first(auth.get("x509_subject")),
    )


def _first(values: Iterable[bytes] | None) -> str | None:
    for value in values or ():
        return value.decode(errors="replace")
    return None


class Gate(Layer):
    def __init__(
        self,
        gatekeeper: Gatekeeper,
        roles: Callable[[str], Role | None] = required_role,
    ):
        self.gatekeeper = gatekeeper
        self._roles = roles
        self._role: dict[str, Role | None] = {}

    def prepare(self, method: Method) -> bool:
        self._role[method.path] = self._roles(method.path)
        return True

    def _admit(self, call: Call) -> None:
        context = call.context
        call.identity = self.gatekeeper.admit(
            call.method.name, self._role[call.method.path], lambda: grpc_credentials(context)
        )

    async def unary(self, call: Call, request: Any, proceed: Unary) -> Any:
        self._admit(call)
        if isinstance(request, Unparsed):  # the caller is admitted: now say why
            raise request.error
        return await proceed(call, request)

    async def stream(self, call: Call, request: Any, proceed: Stream) -> AsyncIterator[Any]:
        self._admit(call)
        if isinstance(request, Unparsed):
            raise request.error
        async for response in proceed(call, request):
            yield response


__all__ = ["Gate", "admin_only", "grpc_credentials", "required_role"]
