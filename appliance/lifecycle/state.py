"""The lifecycle's state record: which version of each model is active, and its history.

One JSON file, ``<repository>/.lifecycle.json``, replaced crash-safely on every change
(``_durable.atomic_write``), so after a crash it holds either the state before a step or
the state after it. Per model it keeps the active version, the highest version ever
activated (the anti-rollback floor), the versions to roll back to (most recent last),
and the digest of the package each installed version came from.

This module knows nothing of sessions or gRPC; ``controller`` decides, this records.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from appliance.lifecycle._durable import atomic_write

log = logging.getLogger(__name__)

STATE_NAME = ".lifecycle.json"


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VersionRecord(_Record):
    digest: str = ""  # "sha256:<hex>" of the package file
    installed_at: str = ""
    #: False from just before the folder is renamed into the repository until the
    #: install is recorded: a crash in between leaves a version that recovery removes.
    complete: bool = True


class ModelRecord(_Record):
    active: int | None = None
    highest_activated: int = 0
    #: Versions that were active before, most recent last: rollback pops from the end.
    previous: list[int] = Field(default_factory=list)
    versions: dict[int, VersionRecord] = Field(default_factory=dict)
    activated_at: str = ""


class StateRecord(_Record):
    format: int = 1
    models: dict[str, ModelRecord] = Field(default_factory=dict)


class StateStore:
    """The state record in memory, saved to disk after each change."""

    def __init__(self, repository: Path):
        self.path = repository / STATE_NAME
        self.record = StateRecord()

    def load(self) -> None:
        """Read the record; a missing file is an empty record, a corrupt one is set aside."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        try:
            self.record = StateRecord.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as exc:
            # Writes are atomic, so this is a disk fault or a hand edit. Serving must go
            # on; recovery rebuilds a conservative record from the folders on disk.
            aside = self.path.with_name(f"{STATE_NAME}.corrupt-{utc_now()}")
            self.path.rename(aside)
            log.error("state record %s unreadable (%s); moved to %s", self.path, exc, aside)

    def save(self) -> None:
        data = self.record.model_dump_json(indent=2).encode() + b"\n"
        atomic_write(self.path, data)

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Make the block's changes and save them; if saving fails, memory stays as before.

        So a disk that refuses the write (full, read-only) leaves the record in memory
        agreeing with the one on disk, and the caller's error says what happened.
        """
        before = self.record.model_copy(deep=True)
        try:
            yield
            self.save()
        except BaseException:
            self.record = before
            raise

    def model(self, name: str) -> ModelRecord:
        return self.record.models.setdefault(name, ModelRecord())

    def active_version(self, name: str) -> int | None:
        """The recorded active version (the manager's choice on start)."""
        record = self.record.models.get(name)
        return record.active if record else None

    def installed(self, name: str, version: int) -> bool:
        """Whether ``version`` came in by a push (its install is recorded)."""
        record = self.record.models.get(name)
        return record is not None and version in record.versions

    def activated_versions(self, name: str) -> list[int]:
        """The active version, then the earlier active ones, most recent first."""
        record = self.record.models.get(name)
        if record is None or record.active is None:
            return []
        return list(dict.fromkeys([record.active, *reversed(record.previous)]))

    def highest_activated(self, name: str) -> int:
        record = self.record.models.get(name)
        return record.highest_activated if record else 0

    def record_pending(self, name: str, version: int, digest: str) -> None:
        """About to move ``version`` into the repository; not complete until recorded."""
        with self._changing():
            self.model(name).versions[version] = VersionRecord(digest=digest, complete=False)

    def record_install(self, name: str, version: int, digest: str) -> None:
        with self._changing():
            record = VersionRecord(digest=digest, installed_at=utc_now())
            self.model(name).versions[version] = record

    def pending(self) -> list[tuple[str, int]]:
        """Installs a crash interrupted between the rename and its record."""
        return [
            (name, version)
            for name, record in self.record.models.items()
            for version, entry in record.versions.items()
            if not entry.complete
        ]

    def record_activation(self, name: str, version: int, previous: int | None) -> None:
        """``version`` is active now; ``previous`` becomes the first rollback target."""
        with self._changing():
            record = self.model(name)
            record.previous = [v for v in record.previous if v != version]
            if previous is not None and previous != version:
                record.previous = [v for v in record.previous if v != previous] + [previous]
            self._set_active(record, version)

    def record_rollback(self, name: str, version: int) -> None:
        """Back to ``version``, taken off the rollback list; the abandoned one is not kept."""
        with self._changing():
            record = self.model(name)
            record.previous = [v for v in record.previous if v != version]
            self._set_active(record, version)

    def _set_active(self, record: ModelRecord, version: int) -> None:
        record.active = version
        record.highest_activated = max(record.highest_activated, version)
        record.activated_at = utc_now()

    def forget(self, name: str, version: int) -> None:
        if name not in self.record.models:
            return
        with self._changing():
            record = self.record.models[name]
            record.versions.pop(version, None)
            record.previous = [v for v in record.previous if v != version]

    def digest(self, name: str, version: int) -> str:
        record = self.record.models.get(name)
        entry = record.versions.get(version) if record else None
        return entry.digest if entry else ""


__all__ = ["STATE_NAME", "ModelRecord", "StateRecord", "StateStore", "VersionRecord", "utc_now"]
