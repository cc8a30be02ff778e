"""Property-based fuzzing of package extraction: mutated and hand-made hostile archives.

Whatever the bytes (flipped, cut, spliced valid packages; tar members of every type,
with hostile names, PAX headers and GNU sparse maps), extraction either refuses with a
``PackageError`` or writes only flat regular files that add up to no more than the
archive itself. It never raises anything else, never writes outside its folder, and
writes nothing at all when it refuses a member's header.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.errors import PackageError
from appliance.package.archive import extract_archive
from appliance.package.manifest import FILE_NAME

EXAMPLES = 300
# No example database: the seed package is signed afresh each run (ECDSA signatures
# are randomised), so examples saved from another run would not replay.
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def package_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real signed package (the tiny classifier), the seed of every mutation."""
    from appliance.package import (
        Manifest,
        build_package,
        generate_keypair,
        make_golden,
        specs_from_onnx,
    )
    from tests.package.conftest import _tiny_classifier

    folder = tmp_path_factory.mktemp("seed")
    model = _tiny_classifier(folder / "tiny.onnx")
    private, _ = generate_keypair(folder / "keys")
    inputs, outputs = specs_from_onnx(model)
    manifest = Manifest(
        name="tiny", version=1, inputs=inputs, outputs=outputs, golden=make_golden(model)
    )
    return build_package(model, manifest, private, folder / "out").read_bytes()


def _check(archive: bytes, work: Path) -> None:
    apkg = work / "fuzz.apkg"
    apkg.write_bytes(archive)
    dest = work / "dest"
    try:
        names = extract_archive(apkg, dest, max_bytes=1 << 20)
    except PackageError:
        return
    written = sorted(p for p in work.rglob("*") if p != apkg)
    assert written[0] == dest and all(p.parent == dest for p in written[1:])
    assert sorted(p.name for p in written[1:]) == sorted(names)
    assert all(FILE_NAME.match(n) and (dest / n).is_file() for n in names)
    assert not any((dest / n).is_symlink() for n in names)
    assert sum((dest / n).stat().st_size for n in names) <= len(archive)


def _fresh(tmp_path: Path, tag: str) -> Path:
    work = tmp_path / tag
    if work.exists():
        for path in sorted(work.rglob("*"), reverse=True):
            path.unlink() if not path.is_dir() or path.is_symlink() else path.rmdir()
    work.mkdir(exist_ok=True)
    return work


@SETTINGS
@given(data=st.data())
def test_mutated_packages_are_refused_or_extracted_safely(
    package_bytes: bytes, tmp_path: Path, data: st.DataObject
) -> None:
    archive = bytearray(package_bytes)
    for _ in range(data.draw(st.integers(1, 8), label="edits")):
        kind = data.draw(st.sampled_from(["flip", "cut", "splice", "zero_block"]), label="kind")
        at = data.draw(st.integers(0, max(len(archive) - 1, 0)), label="at")
        if kind == "flip" and archive:
            archive[at] ^= data.draw(st.integers(1, 255), label="mask")
        elif kind == "cut":
            del archive[at:]
        elif kind == "splice":
            archive[at:at] = data.draw(st.binary(min_size=1, max_size=1024), label="bytes")
        else:
            archive[at : at + 512] = bytes(512)
    _check(bytes(archive), _fresh(tmp_path, "mutated"))


NAMES = st.sampled_from(
    ["model.onnx", "model.json", "../x", "/etc/x", "a/b", ".hidden", "ok.bin", "", "x" * 300]
)
TYPES = st.sampled_from(
    [
        tarfile.REGTYPE,
        tarfile.AREGTYPE,
        tarfile.LNKTYPE,
        tarfile.SYMTYPE,
        tarfile.CHRTYPE,
        tarfile.BLKTYPE,
        tarfile.DIRTYPE,
        tarfile.FIFOTYPE,
        tarfile.CONTTYPE,
        tarfile.GNUTYPE_SPARSE,
    ]
)
PAX = st.dictionaries(
    st.sampled_from(
        [
            "path",
            "size",
            "linkpath",
            "GNU.sparse.major",
            "GNU.sparse.minor",
            "GNU.sparse.name",
            "GNU.sparse.realsize",
            "GNU.sparse.size",
            "GNU.sparse.map",
        ]
    ),
    st.sampled_from(["0", "1", "9999999999", "../../etc/passwd", "0,0", "x", ""]),
    max_size=4,
)


@SETTINGS
@given(
    members=st.lists(
        st.tuples(NAMES, TYPES, st.binary(max_size=2048), PAX, st.integers(0, 0o7777)),
        min_size=1,
        max_size=6,
    ),
)
def test_hand_made_hostile_members_never_escape(
    tmp_path: Path, members: list[tuple[str, bytes, bytes, dict[str, str], int]]
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload, pax, mode in members:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.pax_headers = kind, mode, pax
            info.linkname = "/etc/passwd" if kind in (tarfile.LNKTYPE, tarfile.SYMTYPE) else ""
            info.size = len(payload) if kind in tarfile.REGULAR_TYPES else 0
            try:
                tar.addfile(info, io.BytesIO(payload) if info.size else None)
            except (ValueError, tarfile.TarError):
                continue  # tarfile would not write this one at all
    _check(buffer.getvalue(), _fresh(tmp_path, "made"))
