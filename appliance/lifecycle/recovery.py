"""Start-up recovery: undo what an interrupted push left, settle the state record.

Runs before the daemon decides what to serve. A push is complete once its install is
recorded; anything short of that is removed: staging leftovers, and a version folder
renamed into the repository but not yet recorded. Records that name folders gone from
disk are dropped, and a missing active version falls back to the last previous one.
"""

from __future__ import annotations

import logging
from pathlib import Path

from appliance.lifecycle._durable import remove_folder
from appliance.lifecycle.audit import AuditSink
from appliance.lifecycle.staging import Staging
from appliance.lifecycle.state import StateStore
from appliance.package import MODEL_NAME
from appliance.repository import EMBEDDED_ROOT

log = logging.getLogger(__name__)


def recover(repository: Path, state: StateStore, audit: AuditSink) -> None:
    staging = Staging(repository)
    removed = staging.clean()
    state.load()
    removed += _remove_unrecorded_installs(repository, state, staging)
    repaired = _repair_state(repository, state)
    if removed or repaired:
        audit.record(
            "admin.recover", caller="daemon", outcome="ok", removed=removed, repaired=repaired
        )


def _remove_unrecorded_installs(repository: Path, state: StateStore, staging: Staging) -> list[str]:
    removed = []
    for name, version in state.pending():
        folder = repository / name / str(version)
        if folder.is_dir():
            remove_folder(folder, staging.root)
            removed.append(f"{name}/{version}")
            log.warning("removed %s version %d: its install was interrupted", name, version)
        state.forget(name, version)
    return removed


def _on_disk(repository: Path, name: str, version: int) -> bool:
    return any(
        (root / name / str(version) / MODEL_NAME).is_file() for root in (repository, EMBEDDED_ROOT)
    )


def _repair_state(repository: Path, state: StateStore) -> list[str]:
    repaired: list[str] = []
    for name, record in state.record.models.items():
        record.versions = {
            v: r for v, r in record.versions.items() if _on_disk(repository, name, v)
        }
        record.previous = [v for v in record.previous if _on_disk(repository, name, v)]
        if record.active is not None and not _on_disk(repository, name, record.active):
            fallback = record.previous.pop() if record.previous else None
            repaired.append(f"{name}: active version {record.active} missing, now {fallback}")
            log.error(
                "model %s: active version %s is missing on disk; serving %s",
                name,
                record.active,
                fallback,
            )
            record.active = fallback
    if repaired:
        state.save()
    return repaired


__all__ = ["recover"]
