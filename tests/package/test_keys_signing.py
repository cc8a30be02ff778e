"""Key pairs, signing and verification of package folders."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.errors import PackageError, SignatureError
from appliance.package import (
    SIGNATURE_NAME,
    generate_keypair,
    sign_folder,
    unpack_package,
    verify_folder,
)


def test_keypair_modes(tmp_path: Path) -> None:
    private, public = generate_keypair(tmp_path / "k")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert b"PRIVATE KEY" in private.read_bytes()


def test_keypair_refuses_overwrite(tmp_path: Path) -> None:
    generate_keypair(tmp_path)
    with pytest.raises(PackageError, match="already exists"):
        generate_keypair(tmp_path)


@pytest.fixture
def folder(apkg: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "unpacked"
    unpack_package(apkg, dest)
    return dest


def test_roundtrip(folder: Path, keys: tuple[Path, Path], other_keys: tuple[Path, Path]) -> None:
    assert verify_folder(folder, [other_keys[1], keys[1]]) == keys[1]


def test_flipped_byte_in_model_refused(folder: Path, keys: tuple[Path, Path]) -> None:
    model = folder / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(SignatureError, match=r"tampered.*model\.onnx"):
        verify_folder(folder, [keys[1]])


def test_changed_manifest_refused(folder: Path, keys: tuple[Path, Path]) -> None:
    manifest = folder / "model.json"
    manifest.write_text(manifest.read_text().replace('"version": 3', '"version": 4'))
    with pytest.raises(SignatureError, match=r"tampered.*model\.json"):
        verify_folder(folder, [keys[1]])


def test_extra_file_refused(folder: Path, keys: tuple[Path, Path]) -> None:
    (folder / "payload.bin").write_bytes(b"x")
    with pytest.raises(SignatureError, match=r"tampered.*payload\.bin"):
        verify_folder(folder, [keys[1]])


def test_other_key_refused(folder: Path, other_keys: tuple[Path, Path]) -> None:
    with pytest.raises(SignatureError, match="not made by a trusted key"):
        verify_folder(folder, [other_keys[1]])


def test_resigned_by_other_key_refused(
    folder: Path, keys: tuple[Path, Path], other_keys: tuple[Path, Path]
) -> None:
    sign_folder(folder, other_keys[0])
    with pytest.raises(SignatureError, match="not made by a trusted key"):
        verify_folder(folder, [keys[1]])


def test_unsigned_refused(folder: Path, keys: tuple[Path, Path]) -> None:
    (folder / SIGNATURE_NAME).unlink()
    with pytest.raises(SignatureError, match="unsigned"):
        verify_folder(folder, [keys[1]])


def test_no_trusted_keys_refused(folder: Path) -> None:
    with pytest.raises(SignatureError, match="no trusted public keys"):
        verify_folder(folder, [])


def _model_signing_cli() -> str | None:
    found = shutil.which("model_signing")
    if found:
        return found
    candidate = Path(sys.executable).parent / "model_signing"
    return str(candidate) if candidate.exists() else None


@pytest.mark.skipif(_model_signing_cli() is None, reason="model_signing CLI not installed")
def test_model_signing_cli_accepts_our_package(folder: Path, keys: tuple[Path, Path]) -> None:
    cli = _model_signing_cli()
    assert cli is not None
    command = [
        cli,
        "verify",
        "key",
        str(folder),
        "--signature",
        str(folder / SIGNATURE_NAME),
        "--public_key",
        str(keys[1]),
    ]
    ok = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (folder / "model.onnx").write_bytes(b"\x00" + (folder / "model.onnx").read_bytes()[1:])
    bad = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode != 0
