"""The staging area, ``<repository>/.staging/``: where packages arrive and are unpacked.

Every push gets a fresh folder here; nothing in it is ever served (the repository scan
skips dot-folders). A version leaves staging for ``<repository>/<model>/<version>/`` by
one rename, and a removed version comes back here to be deleted, so whatever a crash
leaves behind is under this folder, and start-up deletes it all.

An upload is bounded in size (announced up front, at most ``lifecycle.max_package_bytes``)
and in patience: ``idle_bounded`` refuses one that sends nothing for
``lifecycle.upload_idle_timeout_s``, so a stalled client cannot hold staging space.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

from appliance.errors import DeadlineExceededError, PackageError
from appliance.lifecycle._durable import fsync_dir
from appliance.package.archive import MAX_PACKAGE_BYTES

log = logging.getLogger(__name__)

T = TypeVar("T")

STAGING_NAME = ".staging"


class Upload:
    """A package file being received into its own staging folder, hashed as it arrives."""

    def __init__(self, folder: Path, filename: str, total_size: int):
        self.folder = folder
        self.filename = filename
        self.total_size = total_size
        self.path = folder / "package.apkg"
        self.received = 0
        self._hash = hashlib.sha256()
        self._file = self.path.open("wb")

    @property
    def digest(self) -> str:
        return f"sha256:{self._hash.hexdigest()}"

    def write(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.total_size:
            raise PackageError(
                f"{self.filename}: expected {self.total_size} bytes as announced, "
                f"received more ({self.received})"
            )
        self._hash.update(chunk)
        self._file.write(chunk)

    def finish(self) -> None:
        """Check the size and make the file durable."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if self.received != self.total_size:
            raise PackageError(
                f"{self.filename}: expected {self.total_size} bytes as announced, received "
                f"{self.received}; the upload was cut short"
            )

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        shutil.rmtree(self.folder, ignore_errors=True)


async def idle_bounded(messages: AsyncIterator[T], idle_s: float, what: str) -> AsyncIterator[T]:
    """``messages`` as they come, refused once none arrives for ``idle_s`` seconds."""
    iterator = aiter(messages)
    while True:
        try:
            async with asyncio.timeout(idle_s):
                message = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise DeadlineExceededError(
                f"{what}: stalled, nothing arrived for {idle_s:g} s; expected the next "
                "part of the upload (lifecycle.upload_idle_timeout_s)"
            ) from None
        yield message


class Staging:
    def __init__(self, repository: Path, max_bytes: int = MAX_PACKAGE_BYTES):
        self.root = repository / STAGING_NAME
        self.max_bytes = max_bytes

    def begin_upload(self, filename: str, total_size: int) -> Upload:
        if total_size <= 0 or total_size > self.max_bytes:
            raise PackageError(
                f"{filename}: expected a package of 1 byte to {self.max_bytes} bytes "
                f"(lifecycle.max_package_bytes), announced {total_size}"
            )
        folder = self.root / f"push-{uuid.uuid4().hex[:12]}"
        folder.mkdir(parents=True, mode=0o750)
        return Upload(folder, Path(filename).name or "package.apkg", total_size)

    @property
    def trash(self) -> Path:
        return self.root

    def clean(self) -> list[str]:
        """Delete everything a crash left in staging; return what was removed."""
        if not self.root.is_dir():
            return []
        removed = []
        for leftover in sorted(self.root.iterdir()):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
            removed.append(leftover.name)
        if removed:
            fsync_dir(self.root)
            log.warning("removed %d leftover(s) of interrupted pushes: %s", len(removed), removed)
        return removed


__all__ = ["STAGING_NAME", "Staging", "Upload"]
