"""Security of the daemon's ports: TLS and mTLS, callers and their roles, the gates.

- ``identity``: credentials (bearer token, client certificate, Unix uid) to ``Identity``,
  and ``authorize(identity, role, action)``;
- ``access``: ``Gatekeeper``, the decision from plain values (action, role, credentials)
  that every transport asks, and the one writer of ``auth.refused``;
- ``gate``: its gRPC adapter, a layer of the inference and admin servers;
- ``tls``: server credentials whose certificates reload when their files change.
"""

from appliance.security.access import (
    REPOSITORY_CONTROL,
    V2_ROLES,
    Gatekeeper,
    current_caller,
    v2_role,
)
from appliance.security.gate import Gate, admin_only, grpc_credentials, required_role
from appliance.security.identity import (
    ROLES,
    Authenticator,
    Credentials,
    Identity,
    auth_required,
    authorize,
    hash_token,
    new_token,
)
from appliance.security.tls import CertificateFiles, HandshakeAudit

__all__ = [
    "REPOSITORY_CONTROL",
    "ROLES",
    "V2_ROLES",
    "Authenticator",
    "CertificateFiles",
    "Credentials",
    "Gate",
    "Gatekeeper",
    "HandshakeAudit",
    "Identity",
    "admin_only",
    "auth_required",
    "authorize",
    "current_caller",
    "grpc_credentials",
    "hash_token",
    "new_token",
    "required_role",
    "v2_role",
]
