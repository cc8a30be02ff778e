"""Security of the inference port: TLS and mTLS, callers and their roles, the gate.

- ``identity``: credentials (bearer token, client certificate, Unix uid) to ``Identity``,
  and ``authorize(identity, role, action)``;
- ``gate``: the interceptor that identifies, authorizes, audits and logs every RPC;
- ``tls``: server credentials whose certificates reload when their files change.
"""

from appliance.security.gate import Gate, identity_from_context, required_role
from appliance.security.identity import (
    ROLES,
    Authenticator,
    Identity,
    auth_required,
    authorize,
    hash_token,
    new_token,
)
from appliance.security.tls import CertificateFiles, HandshakeAudit

__all__ = [
    "ROLES",
    "Authenticator",
    "CertificateFiles",
    "Gate",
    "HandshakeAudit",
    "Identity",
    "auth_required",
    "authorize",
    "hash_token",
    "identity_from_context",
    "new_token",
    "required_role",
]
