"""TLS and mTLS on the HTTP port, from the same ``[server.tls]`` files as the gRPC port.

Owns the ``ssl.SSLContext`` the HTTP server listens with: TLS 1.2 or newer, the
server's certificate and key, and with ``client_ca`` a required client certificate
signed by that CA (the TLS layer refuses any other before a request is read). The files
are re-read when they change, as on the gRPC port: every handshake passes through the
context's SNI callback (OpenSSL calls it with or without SNI), which switches the
connection to a context built from the new files once they load as a matching pair;
until then the previous context stays. The files were checked at start by
``appliance.security.CertificateFiles``.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading

from appliance.config import TLSConfig
from appliance.errors import ConfigError

log = logging.getLogger(__name__)

_Stamp = tuple[tuple[int, int], ...]


class ReloadingContext:
    def __init__(self, tls: TLSConfig):
        self.tls = tls
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._rejected: _Stamp | None = None
        self._current = self._build()
        self.context = self._current  # what the server listens with
        self.context.sni_callback = self._select

    def _paths(self) -> list[str]:
        paths = [str(self.tls.cert), str(self.tls.key)]
        if self.tls.client_ca is not None:
            paths.append(str(self.tls.client_ca))
        return paths

    def _stat(self) -> _Stamp:
        stamps = []
        for path in self._paths():
            try:
                st = os.stat(path)
            except OSError as exc:
                raise ConfigError(f"server.tls: cannot read {path}: {exc.strerror}") from exc
            stamps.append((st.st_mtime_ns, st.st_size))
        return tuple(stamps)

    def _build(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        try:
            context.load_cert_chain(str(self.tls.cert), str(self.tls.key))
            if self.tls.client_ca is not None:
                context.load_verify_locations(cafile=str(self.tls.client_ca))
                context.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"server.tls: the HTTP port cannot use the files: {exc}") from exc
        return context

    def _fresh(self) -> ssl.SSLContext:
        with self._lock:
            try:
                stamp = self._stat()
            except ConfigError:
                return self._current
            if stamp in (self._stamp, self._rejected):
                return self._current
            try:
                context = self._build()
            except ConfigError as exc:
                log.warning("TLS files changed but are not usable (%s); keeping the previous", exc)
                self._rejected = stamp
                return self._current
            self._stamp, self._current, self._rejected = stamp, context, None
            log.info("TLS files changed: new HTTP connections use the new certificate")
            return context

    def _select(
        self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
    ) -> None:
        fresh = self._fresh()
        if fresh is not context:
            connection.context = fresh


__all__ = ["ReloadingContext"]
