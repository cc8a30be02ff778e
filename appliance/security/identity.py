"""Who is calling, and may they: identities, bearer tokens, roles.

Owns turning a caller's credentials into an ``Identity`` (``Authenticator``) and the role
check (``authorize``). Credentials, in order:

1. ``authorization: Bearer TOKEN`` metadata: the token's SHA-256 must be listed under
   ``[[auth.tokens]]`` (tokens are never stored, only their hashes);
2. a client certificate that the TLS layer verified against ``server.tls.client_ca``:
   its subject common name, with the roles of its ``[[auth.certificates]]`` entry or
   ``auth.certificate_roles``;
3. a local Unix-socket caller, identified by uid (``Identity.unix_user``; the admin
   service reads the uid with SO_PEERCRED).

A token that is presented but unknown is refused even when a valid certificate comes
with it: a wrong credential is a mistake worth surfacing. Roles do not imply each other:
a client that must both load models and infer lists both.

Credentials arrive as plain values (``Credentials``: headers, peer, the verified
certificate's names), so the gRPC gate and the HTTP front door share this code; it knows
nothing of gRPC's server or interceptors (``appliance.security.gate``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import pwd
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from appliance.config import AuthConfig, Config, Role
from appliance.errors import ConfigError, PermissionDeniedError, UnauthenticatedError

ROLES: tuple[Role, ...] = ("infer", "admin")


@dataclass(frozen=True)
class Identity:
    """A caller: a name for logs and audit (``token:NAME``, ``cert:CN``, ``uid:N``)."""

    name: str
    roles: frozenset[Role]

    @classmethod
    def anonymous(cls) -> Identity:
        """The caller when auth is off: every role, since nothing can be checked."""
        return cls("anonymous", frozenset(ROLES))

    @classmethod
    def unix_user(cls, uid: int, roles: Iterable[Role]) -> Identity:
        """A local caller named by uid, and by user name where the system knows one."""
        try:
            return cls(f"uid:{uid}({pwd.getpwuid(uid).pw_name})", frozenset(roles))
        except KeyError:
            return cls(f"uid:{uid}", frozenset(roles))

    def has(self, role: Role) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Credentials:
    """What a transport knows of one caller, as plain values.

    ``headers``: request headers or gRPC metadata, names in lower case (only
    ``authorization`` is read); ``peer``: the transport's address of the caller
    (``ipv4:10.1.2.3:50000``, ``unix:/path``); ``common_name`` and ``subject``: those of
    a client certificate the TLS layer verified, None without one.
    """

    headers: Mapping[str, str] = field(default_factory=dict)
    peer: str = ""
    common_name: str | None = None
    subject: str | None = None


def authorize(identity: Identity, role: Role, action: str) -> None:
    """Raise ``PermissionDeniedError`` unless ``identity`` holds ``role``."""
    if identity.has(role):
        return
    held = ", ".join(sorted(identity.roles)) or "none"
    raise PermissionDeniedError(
        f"{action} needs role {role!r}; caller {identity.name} has roles: {held}"
    )


def hash_token(token: str) -> str:
    """Hex SHA-256 of a bearer token, as ``[[auth.tokens]] sha256`` stores it.

    A plain hash suffices: tokens are 256 random bits (``new_token``), not passwords,
    so there is nothing for a slow hash to protect against guessing.
    """
    return hashlib.sha256(token.strip().encode()).hexdigest()


def new_token() -> str:
    """A fresh bearer token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def is_loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


def auth_required(config: Config) -> bool:
    """``auth.enabled``, with ``auto`` resolved (see its description in the config)."""
    auth = config.auth
    if isinstance(auth.enabled, bool):
        return auth.enabled
    return bool(
        config.server.tls is not None
        or auth.tokens
        or auth.certificates
        or not is_loopback(config.server.address)
    )


class Authenticator:
    """Credentials in, ``Identity`` out; built once from the config at start."""

    def __init__(self, config: Config):
        self.required = auth_required(config)
        self._certificates_checked = bool(config.server.tls and config.server.tls.client_ca)
        auth = config.auth
        self._tokens = {
            t.sha256: Identity(f"token:{t.name}", frozenset(t.roles)) for t in auth.tokens
        }
        self._certificates = {c.common_name: frozenset(c.roles) for c in auth.certificates}
        self._certificate_roles = frozenset(auth.certificate_roles)
        if self.required:
            self._check_someone_can_pass(config.server.address, auth)

    def _check_someone_can_pass(self, address: str, auth: AuthConfig) -> None:
        if self._tokens or self._certificates_checked:
            return
        why = (
            "auth.enabled = true"
            if auth.enabled is True
            else (
                f'auth.enabled = "auto" and server.address {address!r} is not loopback-only '
                "plaintext"
            )
        )
        raise ConfigError(
            f"authentication is on ({why}) but no caller could ever pass: expected "
            "[[auth.tokens]] entries or server.tls.client_ca, got neither. To serve "
            "anonymously behind a trusted network layer, set auth.enabled = false"
        )

    def certificate_roles(self, common_name: str) -> frozenset[Role]:
        """Roles of a verified client certificate: its ``[[auth.certificates]]`` entry, else
        ``auth.certificate_roles``."""
        return self._certificates.get(common_name, self._certificate_roles)

    def identify(self, credentials: Credentials) -> Identity:
        """The caller of one request, from its headers and its verified certificate."""
        if not self.required:
            return Identity.anonymous()
        token = _bearer_token(credentials.headers)
        if token is not None:
            identity = self._tokens.get(hash_token(token))
            if identity is None:
                raise UnauthenticatedError(
                    "expected a bearer token listed in [[auth.tokens]], got an unknown token"
                )
            return identity
        common_name = credentials.common_name if self._certificates_checked else None
        if common_name:
            return Identity(f"cert:{common_name}", self.certificate_roles(common_name))
        raise UnauthenticatedError(
            "expected credentials (an 'authorization: Bearer TOKEN' header"
            + (" or a client certificate" if self._certificates_checked else "")
            + "), got none"
        )

    @property
    def reads_certificates(self) -> bool:
        """Whether ``identify`` looks at a client certificate (mTLS on the port)."""
        return self._certificates_checked


def _bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        # Not a word of the value: a token sent without its scheme is still a secret.
        raise UnauthenticatedError(
            "expected an 'authorization: Bearer TOKEN' header, got an authorization header "
            "in another form"
        )
    return token.strip()


__all__ = [
    "ROLES",
    "Authenticator",
    "Credentials",
    "Identity",
    "auth_required",
    "authorize",
    "hash_token",
    "is_loopback",
    "new_token",
]
