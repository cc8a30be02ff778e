"""The admin gRPC server: reachable only through the door the operator configured.

The server itself listens on a Unix socket in a directory only the daemon can enter
(``_doors.PrivateSocket``); the doors relay to it: the local socket (``[admin] socket``,
mode 0660, caller by uid) by default, TCP with mutual TLS (``[admin] address`` with
``[admin.tls]``, caller by certificate, admin role from ``[auth]``) when set. Every call
passes the same layers as the inference port (``appliance.servicers``): the error
boundary, then the gate with every method needing the ``admin`` role, so an admin RPC
that forgets to check is closed, not open, and refusals are audited in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from appliance._proto import admin_pb2_grpc as pb_grpc
from appliance.admin._doors import Callers, PrivateSocket, TlsDoor, UnixDoor
from appliance.admin.servicer import AdminServicer
from appliance.audit import AuditSink
from appliance.config import AdminConfig
from appliance.errors import ConfigError
from appliance.lifecycle import DaemonStatus, Lifecycle
from appliance.routing.control import ShadowControl
from appliance.security.access import Gatekeeper
from appliance.security.gate import Gate, admin_only
from appliance.security.identity import Authenticator
from appliance.servicers import ErrorBoundary, WrappingInterceptor

log = logging.getLogger(__name__)

#: Upload chunks are 1 MiB; this leaves room for the framing and a large header.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class AdminServer:
    def __init__(
        self,
        config: AdminConfig,
        lifecycle: Lifecycle,
        status: Callable[[], DaemonStatus],
        *,
        authenticator: Authenticator,
        audit: AuditSink,
        shadows: ShadowControl | None = None,
    ):
        self.config = config
        self._shadows = shadows
        self._lifecycle = lifecycle
        self._status = status
        self._authenticator = authenticator
        self._audit = audit
        self._callers = Callers()
        self._private: PrivateSocket | None = None
        self._door: UnixDoor | TlsDoor | None = None
        self._server: grpc.aio.Server | None = None

    @property
    def where(self) -> str:
        return self.config.address or f"unix:{self.config.socket}"

    async def start(self) -> None:
        try:
            private = self._private = PrivateSocket(self.config.socket)
        except OSError as exc:
            raise ConfigError(f"admin: could not create its private folder: {exc}") from exc
        gatekeeper = Gatekeeper(
            self._callers.identify, self._audit, required=True, audit_grants=False
        )
        server = grpc.aio.server(
            interceptors=[WrappingInterceptor([ErrorBoundary(), Gate(gatekeeper, admin_only)])],
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)],
        )
        pb_grpc.add_AdminServicer_to_server(  # type: ignore[no-untyped-call]
            AdminServicer(self._lifecycle, self._status, self._shadows), server
        )
        if not server.add_insecure_port(private.address):
            private.remove()
            raise ConfigError(f"admin: could not listen on {private.address}")
        await server.start()
        self._server = server
        self._door = self._make_door(private)
        try:
            await self._door.start()
        except ConfigError:
            await self.stop(None)
            raise
        log.info("admin service on %s", self.where)

    def _make_door(self, private: PrivateSocket) -> UnixDoor | TlsDoor:
        tls = self.config.tls
        if self.config.address is not None and tls is not None:
            return TlsDoor(
                self.config.address,
                tls,
                private,
                self._callers,
                authenticator=self._authenticator,
                audit=self._audit,
            )
        return UnixDoor(self.config.socket, private, self._callers)

    async def stop(self, grace: float | None) -> None:
        if self._door is not None:
            await self._door.close()
        if self._server is not None:
            await self._server.stop(grace)
        if self._private is not None:
            self._private.remove()


__all__ = ["AdminServer"]
