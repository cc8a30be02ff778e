"""The audit trail: one JSON object per line for every security-relevant decision.

Owns appending audit records (refused callers, admin actions accepted or refused) to the
configured file (``lifecycle.audit_log``) and repeating each to the ``appliance.audit``
logger, so the journal has them even where the file cannot be written. A record names
who, what, and the outcome; never tensor contents or package bytes.

The file is opened in append mode per record (``O_APPEND``: concurrent writers never
interleave within a line) and flushed at once; logrotate can move it at any time.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

log = logging.getLogger("appliance.audit")


class AuditSink(Protocol):
    """Where audit records go: ``AuditLog``, or a list in a test."""

    def record(self, event: str, **fields: object) -> None: ...


class AuditLog:
    """``audit.record("auth.refused", caller=..., action=..., status=...)``."""

    def __init__(self, path: Path | None):
        self.path = path
        self._lock = threading.Lock()  # the TLS and admin paths may call from threads
        self._warned = False

    def record(self, event: str, **fields: object) -> None:
        entry: dict[str, object] = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "event": event,
        }
        entry.update(fields)
        log.info("audit %s", event, extra={"audit": entry})
        if self.path is not None:
            self._append(self.path, json.dumps(entry, default=str))

    def _append(self, path: Path, line: str) -> None:
        with self._lock:
            try:
                with path.open("a", encoding="utf-8") as out:
                    out.write(line + "\n")
            except OSError as exc:
                if not self._warned:  # once: the journal still has every record
                    self._warned = True
                    log.warning(
                        "audit file %s cannot be written (%s); audit records go to the log only",
                        path,
                        exc.strerror,
                    )


__all__ = ["AuditLog", "AuditSink"]
