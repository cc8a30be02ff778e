"""TLS and mTLS for the inference port, with certificates reloaded without a restart.

Owns reading and checking ``[server.tls]`` files and the gRPC server credentials built
from them. gRPC asks ``CertificateFiles.fetch`` before each new handshake
(``grpc.dynamic_ssl_server_credentials``); it answers with a new configuration only
when a file's mtime or size changed and the new files are usable (certificate and key
parse and match, the certificate is in its validity period), so a renewal that writes
the certificate before the key never serves a broken pair: the previous one stays until
both are in place. Established connections keep their session; new ones get the new
certificate.

With ``client_ca`` set, a client must present a certificate that CA signed and that
is in its validity period (``require_client_auth``); the TLS layer refuses others
before any RPC.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from appliance.audit import AuditLog
from appliance.config import TLSConfig
from appliance.errors import ConfigError

log = logging.getLogger(__name__)

_Stamp = tuple[tuple[int, int], ...]


class CertificateFiles:
    """The files of ``[server.tls]``, re-read when they change."""

    def __init__(self, tls: TLSConfig):
        self.tls = tls
        self._lock = threading.Lock()  # gRPC calls fetch from its own threads
        self._stamp = self._stat()
        self._rejected: _Stamp | None = None
        self._current = self._load()

    @property
    def require_client_auth(self) -> bool:
        return self.tls.client_ca is not None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._current,
            self.fetch,  # type: ignore[arg-type]  # grpc documents None as "no change"
            require_client_authentication=self.require_client_auth,
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's hook: a new configuration if the files changed and are usable."""
        with self._lock:
            try:
                stamp = self._stat()
            except ConfigError as exc:
                self._reject(None, exc)
                return None
            if stamp in (self._stamp, self._rejected):
                return None
            try:
                config = self._load()
            except ConfigError as exc:
                self._reject(stamp, exc)
                return None
            self._stamp, self._current, self._rejected = stamp, config, None
            log.info("TLS files changed: new connections use the new certificate")
            return config

    def _reject(self, stamp: _Stamp | None, exc: ConfigError) -> None:
        if stamp is None or stamp != self._rejected:
            log.warning("TLS files changed but are not usable (%s); keeping the previous", exc)
        self._rejected = stamp

    def _paths(self) -> list[tuple[str, Path]]:
        paths = [("cert", self.tls.cert), ("key", self.tls.key)]
        if self.tls.client_ca is not None:
            paths.append(("client_ca", self.tls.client_ca))
        return paths

    def _stat(self) -> _Stamp:
        stamps = []
        for key, path in self._paths():
            try:
                st = path.stat()
            except OSError as exc:
                raise ConfigError(f"server.tls.{key}: cannot read {path}: {exc.strerror}") from exc
            stamps.append((st.st_mtime_ns, st.st_size))
        return tuple(stamps)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        files = {key: _read(key, path) for key, path in self._paths()}
        _check_pair(files["cert"], files["key"])
        if "client_ca" in files:
            _certificates("client_ca", files["client_ca"])
        return grpc.ssl_server_certificate_configuration(
            [(files["key"], files["cert"])], root_certificates=files.get("client_ca")
        )


class HandshakeAudit(logging.Handler):
    """Refused TLS handshakes (no client certificate, another CA, expired) end before
    any RPC, so the gate never sees them; gRPC core logs each in one line (captured by
    ``appliance.logs.NativeStderr`` on the ``grpc`` logger), and this handler turns
    each into an audit record."""

    def __init__(self, audit: AuditLog):
        super().__init__(logging.INFO)
        self.audit = audit

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        _, found, reason = message.partition("Handshake failed with error ")
        if found:
            self.audit.record("tls.refused", status="UNAVAILABLE", reason=reason)


def _read(key: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"server.tls.{key}: cannot read {path}: {exc.strerror}") from exc


def _certificates(key: str, pem: bytes) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise ConfigError(
            f"server.tls.{key}: expected PEM certificates, got none that parse ({exc})"
        ) from exc
    return certs


def _check_pair(cert_pem: bytes, key_pem: bytes) -> None:
    leaf = _certificates("cert", cert_pem)[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"server.tls.key: expected an unencrypted PEM private key, got one that does "
            f"not load ({exc})"
        ) from exc
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    pem = serialization.Encoding.PEM
    if key.public_key().public_bytes(pem, spki) != leaf.public_key().public_bytes(pem, spki):
        raise ConfigError(
            "server.tls.key does not match server.tls.cert: expected the private key of "
            f"{leaf.subject.rfc4514_string()}, got another key"
        )
    now = datetime.now(UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise ConfigError(
            f"server.tls.cert is not valid now: valid from {leaf.not_valid_before_utc:%Y-%m-%d} "
            f"to {leaf.not_valid_after_utc:%Y-%m-%d}, now is {now:%Y-%m-%d %H:%M} UTC"
        )


__all__ = ["CertificateFiles", "HandshakeAudit"]
