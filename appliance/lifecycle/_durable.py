"""Crash-safe file operations: what the lifecycle writes survives a kill -9 or power cut.

A file is replaced by writing a temporary sibling, fsyncing it, renaming it over the
target and fsyncing the folder (POSIX rename is atomic; the folder fsync makes the
rename itself durable). A folder enters or leaves the repository by one rename, so a
reader sees a version complete or not at all, never half of it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from appliance.errors import StorageError, StorageFullError

#: OS errors that say the repository cannot take writes, not that a package is bad.
_FULL = {errno.ENOSPC, errno.EDQUOT}
_UNWRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every file of a (flat or nested) folder, then the folder itself."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(folder)


def atomic_write(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def move_into_place(source: Path, target: Path) -> None:
    """Rename a complete folder to its final name (same filesystem), durably."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fsync_tree(source)
    os.rename(source, target)
    fsync_dir(target.parent)
    fsync_dir(source.parent)


def remove_folder(folder: Path, trash: Path) -> None:
    """Take a folder out of the repository by one rename, then delete it at leisure.

    A crash mid-delete leaves only a leftover under ``trash``, which start-up removes.
    """
    trash.mkdir(parents=True, exist_ok=True)
    doomed = trash / f"removed-{uuid.uuid4().hex[:12]}"
    os.rename(folder, doomed)
    fsync_dir(folder.parent)
    shutil.rmtree(doomed, ignore_errors=True)


@contextlib.contextmanager
def storage_errors(repository: Path) -> Iterator[None]:
    """Turn "cannot write the repository" OS errors into errors an operator can act on."""
    try:
        yield
    except OSError as exc:
        where = f"{exc.filename}" if exc.filename else str(repository)
        if exc.errno in _FULL:
            raise StorageFullError(
                f"repository {repository}: no space left writing {where}; expected free "
                "space for the package, its unpacked copy and the state file (remove old "
                "versions with `appliance models remove`)"
            ) from exc
        if exc.errno in _UNWRITABLE:
            raise StorageError(
                f"repository {repository} cannot be written ({exc.strerror}: {where}); "
                "pushes and version changes need a writable repository.path"
            ) from exc
        raise


__all__ = [
    "atomic_write",
    "fsync_dir",
    "fsync_tree",
    "move_into_place",
    "remove_folder",
    "storage_errors",
]
