"""Audit records of admin actions: one per push, activation, rollback or removal.

Each record says who (Unix uid or certificate subject), what (``admin.<action>``, model,
version), the package digest, the outcome and why: ``ok``; ``refused``, the caller's
request was declined (bad signature, failed self-test, downgrade...); ``failed``, the
box could not do it; ``cancelled``, the caller went away (or its deadline passed)
before the action changed anything. An action the caller cancelled once its change had
begun is finished anyway and recorded ``ok`` with a note. Never tensor contents. The
records go to the daemon's audit trail (``appliance.audit.AuditLog``: append-only JSON
lines at ``lifecycle.audit_log``); this module only decides what an admin action's
record holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from appliance.audit import AuditSink
from appliance.errors import ApplianceError


@contextlib.contextmanager
def audited(sink: AuditSink, action: str, who: str, **fields: Any) -> Iterator[dict[str, Any]]:
    """Audit one action: the block fills in details; its outcome is what it raised.

    Errors pass through unchanged; they are only recorded.
    """
    entry: dict[str, Any] = {"caller": who, **fields}
    try:
        yield entry
    except ApplianceError as exc:
        entry.update(outcome="refused" if exc.client_error else "failed", reason=str(exc))
        sink.record(f"admin.{action}", **entry)
        raise
    except Exception as exc:
        entry.update(outcome="failed", reason=f"internal error: {type(exc).__name__}")
        sink.record(f"admin.{action}", **entry)
        raise
    except asyncio.CancelledError:
        if "outcome" not in entry:  # else the change was finished first (see controller)
            entry.update(
                outcome="cancelled", reason="the caller cancelled the call or its deadline passed"
            )
        sink.record(f"admin.{action}", **entry)
        raise
    entry.setdefault("outcome", "ok")
    sink.record(f"admin.{action}", **entry)


__all__ = ["AuditSink", "audited"]
