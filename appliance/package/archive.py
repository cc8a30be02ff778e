"""The ``.apkg`` container: a flat, uncompressed tar of the package folder's files.

Writing goes through a temporary file in the destination folder and an atomic rename,
so a crash never leaves half a package under the final name. Reading extracts only
what a package may hold: regular files, flat names (no folders), no absolute paths,
no ``..``, no links or devices, no sparse members, and a bounded size. Anything else is
a ``PackageError`` before a byte is written.

The size bound is two-fold. A plain tar stores every byte of every member, so the
members' sizes can never add up to more than the archive file itself: a header that
claims more (a GNU sparse member, a forged PAX ``size``) is refused, so a 20 KB package
cannot write 500 MB to staging. On top of that the total is capped by the box's
``lifecycle.max_package_bytes``.
"""

from __future__ import annotations

import contextlib
import os
import tarfile
import tempfile
from pathlib import Path

from appliance.errors import PackageError
from appliance.package.manifest import FILE_NAME

#: Largest package accepted (ONNX external data allows >2 GB models; 16 GiB covers them).
MAX_PACKAGE_BYTES = 16 * 1024**3
#: What tarfile raises on hostile headers: its own errors, and ValueError from a PAX
#: number that is not one (found by the fuzz tests: ``GNU.sparse.realsize = "x"``).
_UNREADABLE = (tarfile.TarError, OSError, ValueError)
#: model.onnx, model.json, model.sig and a few external-data files.
MAX_MEMBERS = 64


def write_archive(folder: Path, out_path: Path) -> Path:
    """Tar every file of ``folder`` (flat) into ``out_path`` atomically."""
    folder, out_path = Path(folder), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in folder.iterdir())
    for path in files:
        if not path.is_file() or path.is_symlink() or not FILE_NAME.match(path.name):
            raise PackageError(f"{path}: a package holds only regular files with plain names")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", dir=out_path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            with tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for path in files:
                    info = tar.gettarinfo(str(path), arcname=path.name)
                    # Reproducible and anonymous: no owner names or build-box uids.
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    info.mode = 0o644
                    with path.open("rb") as src:
                        tar.addfile(info, src)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(0o644)
        tmp.replace(out_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(out_path.parent)
    return out_path


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_member(member: tarfile.TarInfo) -> str:
    name = member.name.removeprefix("./")
    if member.issparse():
        # GNU sparse members (old GNU 'S' headers or PAX GNU.sparse.*) expand holes to
        # zeros on extraction: the header, not the archive, decides how much is written.
        raise PackageError(
            f"package member {member.name!r}: expected a plain file, got a GNU sparse "
            f"member claiming {member.size} bytes; packages hold no sparse files"
        )
    if member.name.startswith("/") or Path(member.name).is_absolute():
        raise PackageError(f"package member {member.name!r}: absolute paths are not allowed")
    if ".." in Path(member.name).parts:
        raise PackageError(f"package member {member.name!r}: '..' is not allowed")
    if member.issym() or member.islnk():
        raise PackageError(f"package member {member.name!r}: links are not allowed")
    if not member.isfile():
        raise PackageError(
            f"package member {member.name!r}: expected a regular file, got a folder or device"
        )
    if "/" in name or not FILE_NAME.match(name):
        raise PackageError(f"package member {member.name!r}: expected a flat, plain file name")
    return name


def extract_archive(apkg: Path, dest_dir: Path, max_bytes: int = MAX_PACKAGE_BYTES) -> list[str]:
    """Check every member, then extract into ``dest_dir`` (created); return the file names.

    Nothing is written (``dest_dir`` is not even created) unless every member passed.
    """
    apkg, dest_dir = Path(apkg), Path(dest_dir)
    with _open_tar(apkg) as tar:
        try:
            members = tar.getmembers()
        except _UNREADABLE as exc:
            raise PackageError(f"{apkg}: truncated or corrupt package: {exc}") from exc
        if len(members) > MAX_MEMBERS:
            raise PackageError(f"{apkg}: expected at most {MAX_MEMBERS} files, got {len(members)}")
        names = [_check_member(m) for m in members]
        if len(set(names)) != len(names):
            raise PackageError(f"{apkg}: duplicate file names in the package")
        _check_total(apkg, sum(m.size for m in members), max_bytes)
        dest_dir.mkdir(parents=True, exist_ok=True)
        for member, name in zip(members, names, strict=True):
            _extract_one(tar, member, dest_dir / name)
    return names


def _check_total(apkg: Path, total: int, max_bytes: int) -> None:
    archive_bytes = apkg.stat().st_size
    if total > archive_bytes:
        raise PackageError(
            f"{apkg}: members claim {total} bytes unpacked, more than the package's own "
            f"{archive_bytes} bytes; a plain tar never grows when unpacked"
        )
    if total > max_bytes:
        raise PackageError(
            f"{apkg}: unpacked size {total} bytes exceeds the {max_bytes} bytes limit "
            "(lifecycle.max_package_bytes)"
        )


def _open_tar(apkg: Path) -> tarfile.TarFile:
    if not apkg.is_file():
        raise PackageError(f"{apkg}: no such package file")
    try:
        return tarfile.open(apkg, mode="r:")
    except _UNREADABLE as exc:
        message = f"{apkg}: expected an .apkg (tar) file, could not read it: {exc}"
        raise PackageError(message) from exc


def _extract_one(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    src = tar.extractfile(member)
    if src is None:
        raise PackageError(f"package member {member.name!r}: could not be read")
    with src, target.open("xb") as dst:
        remaining = member.size
        while remaining > 0:
            try:
                chunk = src.read(min(remaining, 1 << 20))
            except (tarfile.TarError, ValueError) as exc:
                raise PackageError(f"package member {member.name!r}: unreadable: {exc}") from exc
            if not chunk:
                raise PackageError(f"package member {member.name!r}: truncated")
            dst.write(chunk)
            remaining -= len(chunk)
    target.chmod(0o644)


__all__ = ["MAX_MEMBERS", "MAX_PACKAGE_BYTES", "extract_archive", "write_archive"]
