"""Building, unpacking and verifying .apkg files; safe extraction; golden and profile."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from appliance.errors import PackageError, SignatureError
from appliance.package import (
    Manifest,
    build_package,
    make_golden,
    make_reference_profile,
    specs_from_onnx,
    unpack_package,
    verify_package,
)
from appliance.package.archive import extract_archive
from appliance.package.golden import run_model


def test_build_names_file_and_verifies(apkg: Path, keys: tuple[Path, Path]) -> None:
    assert apkg.name == "tiny-3.apkg"
    with tarfile.open(apkg) as tar:
        assert sorted(tar.getnames()) == ["model.json", "model.onnx", "model.sig"]
    manifest = verify_package(apkg, [keys[1]])
    assert manifest.name == "tiny" and manifest.labels == ("a", "b", "c")
    assert not list(apkg.parent.glob(".*"))  # no temp file left behind


def test_verify_package_other_key(apkg: Path, other_keys: tuple[Path, Path]) -> None:
    with pytest.raises(SignatureError):
        verify_package(apkg, [other_keys[1]])


def test_unpack_with_trusted_keys(apkg: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    manifest = unpack_package(apkg, tmp_path / "x", trusted_keys=[keys[1]])
    assert manifest.version == 3
    assert (tmp_path / "x" / "model.onnx").is_file()


def test_specs_dynamic_batch(onnx_model: Path) -> None:
    inputs, outputs = specs_from_onnx(onnx_model)
    assert inputs[0].name == "input" and inputs[0].shape == (-1, 4)
    assert outputs[0].datatype == "FP32" and outputs[0].shape == (-1, 3)


def test_manifest_must_match_graph(
    onnx_model: Path, manifest: Manifest, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    wrong = manifest.model_copy(
        update={"inputs": (manifest.inputs[0].model_copy(update={"name": "x"}),)}
    )
    with pytest.raises(PackageError, match="from the ONNX graph"):
        build_package(onnx_model, wrong, keys[0], tmp_path)


def _evil_tar(path: Path, member: tarfile.TarInfo, data: bytes = b"x") -> Path:
    with tarfile.open(path, "w") as tar:
        if member.isfile():
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
        else:
            tar.addfile(member)
    return path


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("../escape.txt", tarfile.REGTYPE, r"'\.\.'"),
        ("/etc/evil", tarfile.REGTYPE, "absolute"),
        ("link", tarfile.SYMTYPE, "links"),
        ("hard", tarfile.LNKTYPE, "links"),
        ("dev", tarfile.CHRTYPE, "device"),
        ("sub/model.onnx", tarfile.REGTYPE, "flat"),
    ],
)
def test_hostile_archive_refused(tmp_path: Path, name: str, kind: bytes, message: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = "/etc/passwd"
    evil = _evil_tar(tmp_path / "evil.apkg", info)
    with pytest.raises(PackageError, match=message):
        unpack_package(evil, tmp_path / "dest")
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "dest").exists()


def test_oversize_refused(apkg: Path, tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="exceeds"):
        extract_archive(apkg, tmp_path / "dest", max_bytes=10)


def test_not_a_tar_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.apkg"
    bogus.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(PackageError, match=r"expected an \.apkg"):
        unpack_package(bogus, tmp_path / "dest")


def test_golden_matches_model(onnx_model: Path) -> None:
    golden = make_golden(onnx_model, n=3)
    assert len(golden.cases) == 3
    case = golden.cases[0]
    x = np.asarray(case.inputs["input"].data, dtype=np.float32).reshape(case.inputs["input"].shape)
    got = run_model(onnx_model, {"input": x})["logits"]
    expected = np.asarray(case.outputs["logits"].data).reshape(case.outputs["logits"].shape)
    np.testing.assert_allclose(got, expected, rtol=golden.rtol, atol=golden.atol)


def test_golden_from_npz(onnx_model: Path, tmp_path: Path) -> None:
    npz = tmp_path / "g.npz"
    np.savez(npz, input=np.ones((2, 4), dtype=np.float32))
    golden = make_golden(onnx_model, npz)
    assert len(golden.cases) == 2
    np.savez(npz, wrong=np.ones((2, 4), dtype=np.float32))
    with pytest.raises(PackageError, match="expected arrays"):
        make_golden(onnx_model, npz)


def test_reference_profile(onnx_model: Path) -> None:
    x = np.random.default_rng(1).standard_normal((200, 4)).astype(np.float32)
    profile = make_reference_profile(onnx_model, {"input": x}, labels=["a", "b", "c"])
    assert profile["n_samples"] == 200
    features = profile["inputs"]["input"]["features"]
    assert len(features) == 4
    assert abs(sum(features[0]["bin_fractions"]) - 1) < 1e-9
    assert len(features[0]["bin_edges"]) == 9
    out = profile["outputs"]["logits"]
    assert out["kind"] == "classifier"
    assert abs(sum(out["class_distribution"].values()) - 1) < 1e-9
    assert 1 / 3 <= out["confidence"]["mean"] <= 1
