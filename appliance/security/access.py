"""Who may do what, decided from plain values: the core of every gate.

``Gatekeeper.admit(action, role, credentials)`` identifies a caller, checks the role the
action needs, and refuses by raising UNAUTHENTICATED, PERMISSION_DENIED or (repository
control off) FAILED_PRECONDITION. It is the one writer of ``auth.refused`` audit records,
and of ``auth.granted`` for admin actions. It knows no transport: the gRPC gate
(``appliance.security.gate``) and the HTTP front door pass an action name (a V2 RPC
name such as ``ModelInfer``, which KServe's REST routes map to one for one), the role it
needs (``v2_role``) and a callable that builds the caller's ``Credentials`` (called only
when authentication is on, so an open box pays no header or certificate lookups).

The admitted identity is the current task's caller (``current_caller``) until the
request ends: the admin servicer names it in the lifecycle's audit records.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable

from appliance.audit import AuditSink
from appliance.clip import clip
from appliance.config import Role
from appliance.errors import ApplianceError, DisabledError, NotReadyError
from appliance.security.identity import Credentials, Identity, authorize

#: The role each KServe V2 action needs; None: open (probes and load balancers call
#: these anonymously). An action this table does not know needs ``admin``: closed by
#: default, so an RPC added later is not open by accident.
V2_ROLES: dict[str, Role | None] = {
    "ServerLive": None,
    "ServerReady": None,
    "ModelReady": "infer",
    "ServerMetadata": "infer",
    "ModelMetadata": "infer",
    "ModelInfer": "infer",
    "ModelStreamInfer": "infer",
    "ModelConfig": "infer",
    "ModelStatistics": "infer",
    "RepositoryIndex": "infer",
    "RepositoryModelLoad": "admin",
    "RepositoryModelUnload": "admin",
}
#: Actions that change what is served from the inference port: off unless
#: ``[server] repository_control = true``.
REPOSITORY_CONTROL = frozenset({"RepositoryModelLoad", "RepositoryModelUnload"})

UNAUTHENTICATED = Identity("unauthenticated", frozenset())

_caller: contextvars.ContextVar[Identity] = contextvars.ContextVar("caller")


def v2_role(action: str) -> Role | None:
    """The role a V2 action needs (``ModelInfer`` -> ``infer``); unknown: ``admin``."""
    return V2_ROLES.get(action, "admin")


def current_caller() -> Identity:
    """The caller the gatekeeper admitted for the request this task is serving."""
    try:
        return _caller.get()
    except LookupError:
        raise NotReadyError("no caller identity: this request did not pass the gate") from None


class Gatekeeper:
    """Admission for one port: how callers are identified, what is audited."""

    def __init__(
        self,
        identify: Callable[[Credentials], Identity],
        audit: AuditSink,
        *,
        required: bool,
        repository_control: bool = True,
        audit_grants: bool = True,
    ):
        self._identify = identify
        self._audit = audit
        self.required = required
        self.repository_control = repository_control
        self._audit_grants = audit_grants
        self._anonymous = Identity.anonymous()

    def admit(
        self, action: str, role: Role | None, credentials: Callable[[], Credentials]
    ) -> Identity:
        """The caller, admitted for ``action``; refusals raise and are audited."""
        if role is None:  # open: a probe with bad credentials still gets its answer
            identity = self._open(credentials)
        elif not self.required and role != "admin" and action not in REPOSITORY_CONTROL:
            identity = self._anonymous  # the hot path of a box with auth off
        else:
            identity = self._checked(action, role, credentials)
        _caller.set(identity)
        return identity

    def _open(self, credentials: Callable[[], Credentials]) -> Identity:
        if not self.required:
            return self._anonymous
        try:
            return self._identify(credentials())
        except ApplianceError:
            return UNAUTHENTICATED

    def _checked(self, action: str, role: Role, credentials: Callable[[], Credentials]) -> Identity:
        found = credentials()
        identity: Identity | None = None
        try:
            identity = self._identify(found) if self.required else self._anonymous
            authorize(identity, role, action)
            if action in REPOSITORY_CONTROL and not self.repository_control:
                raise DisabledError(
                    f"{action} is off on this server: repository control is disabled; an "
                    "operator turns it on with [server] repository_control = true, or "
                    "changes models with 'appliance models'"
                )
        except ApplianceError as exc:
            self._audit.record(
                "auth.refused",
                action=action,
                caller=identity.name if identity is not None else "unknown",
                peer=clip(found.peer, 256),
                status=exc.status.value,
                reason=str(exc),
            )
            raise
        if role == "admin" and self._audit_grants:
            self._audit.record(
                "auth.granted", action=action, caller=identity.name, peer=clip(found.peer, 256)
            )
        return identity


__all__ = [
    "REPOSITORY_CONTROL",
    "UNAUTHENTICATED",
    "V2_ROLES",
    "Gatekeeper",
    "current_caller",
    "v2_role",
]
