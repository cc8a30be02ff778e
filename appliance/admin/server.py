"""The admin gRPC server: on the local Unix socket by default, on TCP with mTLS if set.

Unix socket (``[admin] socket``, mode 0660): the gRPC server listens on an ephemeral
loopback port behind ``UnixSocketGate``, which knows each caller's uid. TCP
(``[admin] address`` with ``[admin.tls]``): client certificates are required, the
caller is the certificate's subject, and it needs the ``admin`` role in ``[auth]``.
Either way the shared ``ErrorBoundary`` maps errors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from appliance._proto import admin_pb2_grpc as pb_grpc
from appliance.admin._peers import CertificateAdmins, UnixSocketGate
from appliance.admin.servicer import AdminServicer, Context
from appliance.audit import AuditLog
from appliance.config import AdminConfig, AdminTLSConfig
from appliance.errors import ConfigError
from appliance.lifecycle import DaemonStatus, Lifecycle
from appliance.security.identity import Authenticator
from appliance.servicers import ErrorBoundary

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
        audit: AuditLog,
    ):
        self.config = config
        self._admins = CertificateAdmins(authenticator, audit)
        self._lifecycle = lifecycle
        self._status = status
        self._server: grpc.aio.Server | None = None
        self._gate: UnixSocketGate | None = None

    @property
    def where(self) -> str:
        return self.config.address or f"unix:{self.config.socket}"

    async def start(self) -> None:
        server = grpc.aio.server(
            interceptors=[ErrorBoundary()],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        tls = self.config.tls
        if self.config.address is not None and tls is not None:
            _bind(server, self.config.address, _credentials(tls))
            identify = self._certificate_caller
        else:
            port = _bind(server, "127.0.0.1:0", None)
            self._gate = UnixSocketGate(self.config.socket, port)
            identify = self._socket_caller
        servicer = AdminServicer(self._lifecycle, self._status, identify)
        pb_grpc.add_AdminServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
        await server.start()
        self._server = server
        if self._gate is not None:
            try:
                await self._gate.start()
            except ConfigError:
                await server.stop(None)
                raise
        log.info("admin service on %s", self.where)

    def _certificate_caller(self, context: Context) -> str:
        return self._admins.identify(dict(context.auth_context()), context.peer())

    def _socket_caller(self, context: Context) -> str:
        assert self._gate is not None  # set before the server starts taking calls
        return self._gate.identify(context.peer())

    async def stop(self, grace: float | None) -> None:
        if self._gate is not None:
            await self._gate.close()
        if self._server is not None:
            await self._server.stop(grace)


def _bind(server: grpc.aio.Server, address: str, creds: grpc.ServerCredentials | None) -> int:
    try:
        port = (
            server.add_insecure_port(address)
            if creds is None
            else server.add_secure_port(address, creds)
        )
    except RuntimeError as exc:
        raise ConfigError(f"admin.address {address!r}: could not listen: {exc}") from exc
    if port == 0:
        raise ConfigError(f"admin.address {address!r}: could not listen (port in use?)")
    return int(port)


def _credentials(tls: AdminTLSConfig) -> grpc.ServerCredentials:
    try:
        pair = (tls.key.read_bytes(), tls.cert.read_bytes())
        ca = tls.client_ca.read_bytes()
    except OSError as exc:
        raise ConfigError(f"admin.tls: could not read {exc.filename}: {exc.strerror}") from exc
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=True)


__all__ = ["AdminServer"]
