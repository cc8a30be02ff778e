"""Who is calling: the Unix uid behind the admin socket, or the client certificate on TCP.

gRPC's Python server cannot tell which process connected to a Unix socket (the kernel
knows, through ``SO_PEERCRED``, but gRPC does not expose the socket), so the admin
socket is ours: ``UnixSocketGate`` accepts each connection, asks the kernel for the
peer's uid, gid and pid, and relays the bytes to the admin gRPC server listening on a
loopback port. The gRPC server sees each relayed connection as coming from a local
port the gate registered, and ``identify`` maps it back to the uid. A connection to
that loopback port that did not come through the gate has no entry and is refused, so
the socket's mode (0660: owner and group) decides who may administer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.audit import AuditLog
from appliance.errors import ConfigError, PermissionDeniedError, UnauthenticatedError
from appliance.security.identity import Authenticator, Identity, authorize

log = logging.getLogger(__name__)

SOCKET_MODE = 0o660
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_RELAY_CHUNK = 256 * 1024


@dataclass(frozen=True)
class UnixPeer:
    pid: int
    uid: int
    gid: int

    def describe(self) -> str:
        try:
            user = pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return f"uid:{self.uid}"
        return f"uid:{self.uid}({user})"


def _peer_port(peer: str) -> int | None:
    """The client port of a gRPC peer string such as ``ipv4:127.0.0.1:54321``."""
    if not peer.startswith(("ipv4:", "ipv6:")):
        return None
    port = peer.rsplit(":", 1)[-1]
    return int(port) if port.isdigit() else None


class UnixSocketGate:
    """The admin Unix socket: accept, learn the peer's uid, relay to gRPC on loopback."""

    def __init__(self, path: Path, upstream_port: int):
        self.path = path
        self._upstream_port = upstream_port
        self._peers: dict[int, UnixPeer] = {}
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        sock = _bind_socket(self.path)
        self._server = await asyncio.start_unix_server(self._relay, sock=sock)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        self.path.unlink(missing_ok=True)

    def identify(self, peer: str) -> str:
        port = _peer_port(peer)
        unix_peer = self._peers.get(port) if port is not None else None
        if unix_peer is None:
            raise UnauthenticatedError(
                "admin calls must come through the admin socket; this connection did not"
            )
        return unix_peer.describe()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        pid, uid, gid = _UCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        )
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        except OSError as exc:
            log.error("admin socket: could not reach the admin server: %s", exc)
            writer.close()
            return
        port = int(up_writer.get_extra_info("sockname")[1])
        self._peers[port] = UnixPeer(pid, uid, gid)
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._peers.pop(port, None)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(_RELAY_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


def _bind_socket(path: Path) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0660 from its first moment."""
    _remove_stale(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o117)  # so the socket is never wider than 0660
        try:
            sock.bind(str(path))
        finally:
            os.umask(old_umask)
        os.chmod(path, SOCKET_MODE)
        sock.listen(64)
    except OSError as exc:
        raise ConfigError(f"admin.socket {path}: could not create the socket: {exc}") from exc
    sock.setblocking(False)
    return sock


def _remove_stale(path: Path) -> None:
    """Remove a socket left by a dead daemon; refuse to take over a live one."""
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_socket():
        raise ConfigError(f"admin.socket {path}: expected a socket or nothing, found a file")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # nobody listens: a leftover
        return
    finally:
        probe.close()
    raise ConfigError(f"admin.socket {path}: another daemon is listening on it")


class CertificateAdmins:
    """Callers of the TCP admin service: verified client certificates with the admin role.

    Roles are the inference port's (``Authenticator.certificate_roles``): the certificate's
    common name in ``[[auth.certificates]]``, else ``auth.certificate_roles``
    (``["infer"]`` by default). So a certificate the hospital CA issued to an inference
    client cannot change the served models, even when ``admin.tls.client_ca`` is the
    same CA.
    """

    def __init__(self, authenticator: Authenticator, audit: AuditLog):
        self._authenticator = authenticator
        self._audit = audit

    def identify(self, auth_context: dict[str, Any], peer: str) -> str:
        """``cert:<subject>`` of an admin; refused (and audited) for any other caller."""
        who = certificate_identity(auth_context)
        names = auth_context.get("x509_common_name") or [b""]
        common_name = names[0].decode(errors="replace")
        try:
            roles = self._authenticator.certificate_roles(common_name)
            authorize(Identity(who, roles), "admin", "admin")
        except PermissionDeniedError as exc:
            self._audit.record(
                "auth.refused",
                action="admin",
                caller=who,
                peer=peer,
                status=exc.status.value,
                reason=str(exc),
            )
            raise
        return who


def certificate_identity(auth_context: dict[str, Any]) -> str:
    """``cert:<subject>`` of a verified mTLS client, from gRPC's auth context."""
    for key in ("x509_subject", "x509_common_name"):
        values = auth_context.get(key)
        if values:
            return "cert:" + b",".join(values).decode(errors="replace")
    raise UnauthenticatedError("admin over TCP needs a client certificate; none was presented")


__all__ = [
    "SOCKET_MODE",
    "CertificateAdmins",
    "UnixPeer",
    "UnixSocketGate",
    "certificate_identity",
]
