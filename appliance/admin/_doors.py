"""The admin service's front doors, and who came through each connection.

The admin gRPC server listens on one Unix socket only, inside a directory the daemon
creates with mode 0700 (``PrivateSocket``): no other user can enter it, and no TCP port
of the admin service exists anywhere. Callers come in through the door the operator
configured:

- ``UnixDoor``, ``[admin] socket`` (mode 0660: its owner and group administer). The
  kernel says who connected (``SO_PEERCRED``: pid, uid, gid).
- ``TlsDoor``, ``[admin] address`` with ``[admin.tls]``: TCP with mutual TLS. The
  handshake is made here (Python's ``ssl``, ALPN ``h2``), so a refused handshake (no
  certificate, another CA, expired) is audited as ``tls.refused`` with the peer and the
  reason, and the caller is the verified certificate's subject, with the roles
  ``[auth]`` gives its common name.

A door relays each connection's bytes to the private socket through a client socket it
first binds to a path of its own in the private directory. gRPC reports that path as
the call's peer (``unix:<path>``), and ``Callers.identify`` maps it back to the identity
the door recorded; the admin gate (``appliance.security.gate``) admits on that identity,
and a peer with no entry is refused.

Why this shape: gRPC's Python server does not expose a connection's socket, so it cannot
ask the kernel for the peer's uid itself; a relay can. The relay used to reach gRPC on
a loopback TCP port, and relayed connections were told apart by their source port: any
local user could bind 127.0.0.2 to the port of an operator's open call, connect, and be
taken for that operator. A bound path in a directory only the daemon can enter cannot
be borrowed, and a Unix socket there cannot be reached by anyone else at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import socket
import ssl
import struct
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from appliance.audit import AuditSink
from appliance.clip import clip
from appliance.config import AdminTLSConfig
from appliance.errors import ConfigError, UnauthenticatedError
from appliance.security.identity import Authenticator, Credentials, Identity

log = logging.getLogger(__name__)

SOCKET_MODE = 0o660
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_RELAY_CHUNK = 256 * 1024
#: sun_path holds 108 bytes, the last a NUL.
_MAX_SOCKET_PATH = 107
#: Seconds a TCP client gets to finish its TLS handshake.
HANDSHAKE_TIMEOUT_S = 10.0


class PrivateSocket:
    """A directory only the daemon can enter: the gRPC socket and the relays' own paths.

    Beside the admin socket when the paths fit (``/run/appliance`` on a box, never
    cleaned while the daemon runs), else in the temporary directory. ``mkdtemp`` makes it
    atomically, with a random name and mode 0700.
    """

    def __init__(self, near: Path):
        self.folder = Path(tempfile.mkdtemp(prefix=".admin-", dir=self._parent(near)))
        self.server_path = self.folder / "grpc"
        self._numbers = itertools.count(1)

    @staticmethod
    def _parent(near: Path) -> str | None:
        room = len(str(near.parent)) + len("/.admin-xxxxxxxx/c0000000")
        if near.parent.is_dir() and os.access(near.parent, os.W_OK) and room <= _MAX_SOCKET_PATH:
            return str(near.parent)
        return None  # tempfile's own directory

    @property
    def address(self) -> str:
        """The gRPC server's listening address."""
        return f"unix:{self.server_path}"

    def client_path(self) -> Path:
        return self.folder / f"c{next(self._numbers)}"

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class Callers:
    """Relayed connections: the peer path gRPC reports, to the identity a door found."""

    def __init__(self) -> None:
        self._by_peer: dict[str, Identity] = {}

    def add(self, path: Path, identity: Identity) -> None:
        self._by_peer[f"unix:{path}"] = identity

    def drop(self, path: Path) -> None:
        self._by_peer.pop(f"unix:{path}", None)

    def identify(self, credentials: Credentials) -> Identity:
        """The identity behind a call's peer; any other peer is refused."""
        identity = self._by_peer.get(credentials.peer)
        if identity is None:
            raise UnauthenticatedError(
                "admin calls must come through the admin socket or the admin TLS port; "
                "this connection did not"
            )
        return identity


class _Door:
    """What both doors share: relaying a connection under an identity."""

    def __init__(self, private: PrivateSocket, callers: Callers):
        self._private = private
        self._callers = callers
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, identity: Identity
    ) -> None:
        path = self._private.client_path()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.bind(str(path))
            upstream.setblocking(False)
            await asyncio.get_running_loop().sock_connect(upstream, str(self._private.server_path))
            up_reader, up_writer = await asyncio.open_unix_connection(sock=upstream)
        except OSError as exc:
            log.error("admin: could not reach the admin server: %s", exc)
            upstream.close()
            path.unlink(missing_ok=True)
            writer.close()
            return
        self._callers.add(path, identity)
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._callers.drop(path)
            path.unlink(missing_ok=True)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()


class UnixDoor(_Door):
    """``[admin] socket``: whoever the socket's mode lets in, named by uid."""

    def __init__(self, path: Path, private: PrivateSocket, callers: Callers):
        super().__init__(private, callers)
        self.path = path

    async def start(self) -> None:
        sock = _bind_socket(self.path)
        self._server = await asyncio.start_unix_server(self._accept, sock=sock)

    async def close(self) -> None:
        await super().close()
        self.path.unlink(missing_ok=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        _pid, uid, _gid = _UCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        )
        # The socket's mode decided already: whoever could connect administers.
        await self._relay(reader, writer, Identity.unix_user(uid, ["admin"]))


class TlsDoor(_Door):
    """``[admin] address``: TCP with mutual TLS; the certificate names the caller."""

    def __init__(
        self,
        address: str,
        tls: AdminTLSConfig,
        private: PrivateSocket,
        callers: Callers,
        *,
        authenticator: Authenticator,
        audit: AuditSink,
    ):
        super().__init__(private, callers)
        self.address = address
        self._context = _server_context(tls)
        self._authenticator = authenticator
        self._audit = audit
        self.port: int | None = None

    async def start(self) -> None:
        host, _, port = self.address.rpartition(":")
        try:
            self._server = await asyncio.start_server(
                self._accept, host.strip("[]"), int(port), reuse_port=False
            )
        except OSError as exc:
            raise ConfigError(
                f"admin.address {self.address!r}: could not listen: {exc.strerror}"
            ) from exc
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _tcp_peer(writer)
        try:
            await writer.start_tls(self._context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S)
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            self._audit.record(
                "tls.refused",
                listener="admin",
                peer=peer,
                status="UNAVAILABLE",
                reason=clip(_handshake_reason(exc), 200),
            )
            writer.close()
            return
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der is None:  # CERT_REQUIRED makes this unreachable; refuse all the same
            writer.close()
            return
        await self._relay(reader, writer, self._identity(x509.load_der_x509_certificate(der)))

    def _identity(self, certificate: x509.Certificate) -> Identity:
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        common_name = str(names[0].value) if names else ""
        roles = self._authenticator.certificate_roles(common_name)
        return Identity(f"cert:{certificate.subject.rfc4514_string()}", roles)


def _tcp_peer(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    if not address:
        return "unknown"
    host, port = address[0], address[1]
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


def _handshake_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"{exc.reason or type(exc).__name__}: {exc.strerror or exc}"
    if isinstance(exc, TimeoutError):
        return f"no TLS handshake within {HANDSHAKE_TIMEOUT_S:g} s"
    return f"connection lost during the TLS handshake ({type(exc).__name__})"


def _server_context(tls: AdminTLSConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS only
    context.set_alpn_protocols(["h2"])  # gRPC clients insist on HTTP/2 by ALPN
    try:
        context.load_cert_chain(tls.cert, tls.key)
        context.load_verify_locations(cafile=tls.client_ca)
    except OSError as exc:
        raise ConfigError(f"admin.tls: could not read {exc.filename}: {exc.strerror}") from exc
    except ssl.SSLError as exc:
        raise ConfigError(
            f"admin.tls: expected a PEM certificate, its key and a CA bundle that load, got "
            f"an error: {exc.reason or exc}"
        ) from exc
    return context


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
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


__all__ = [
    "HANDSHAKE_TIMEOUT_S",
    "SOCKET_MODE",
    "Callers",
    "PrivateSocket",
    "TlsDoor",
    "UnixDoor",
]
