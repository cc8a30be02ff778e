"""Hostile packages against the package checks themselves, without a daemon or ONNX Runtime.

Sparse-member bombs, external data that points out of the package (dense, sparse, in a
node attribute, in a subgraph; through a symlink or a hard link), manifests whose shapes
differ from the graph, and the tamper message's digests. The daemon-level attacks are in
``tests/lifecycle/test_refusals.py``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from appliance.errors import PackageError, SignatureError
from appliance.package import (
    Manifest,
    build_package,
    check_unsigned_folder,
    unpack_package,
    verify_package,
)
from appliance.package.archive import extract_archive
from tests._hostile import (
    BOMB_BYTES,
    LEAK_BYTES,
    TRAVERSAL,
    gnu_sparse_package,
    leaky_graph,
    leaky_manifest,
    leaky_package,
    pax_sparse_package,
    resigned_package,
    signed_package,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("make", [gnu_sparse_package, pax_sparse_package], ids=["gnu", "pax"])
def test_a_sparse_member_is_refused_before_a_byte_is_written(
    apkg: Path, tmp_path: Path, make: object
) -> None:
    bomb = make(apkg, tmp_path / "bomb.apkg")  # type: ignore[operator]
    # The attack is real: Python's own tarfile would expand this member to 512 MiB.
    with tarfile.open(bomb) as tar:
        member = tar.getmember("weights.bin")
        assert member.issparse() and member.size == BOMB_BYTES
    assert bomb.stat().st_size < 64 * 1024
    with pytest.raises(PackageError, match="sparse member claiming 536870912 bytes"):
        extract_archive(bomb, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_members_claiming_more_than_the_archive_holds_are_refused(
    apkg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second bound: even a tar reader that expanded sparse data unflagged is capped
    by the archive's own size."""
    bomb = gnu_sparse_package(apkg, tmp_path / "bomb.apkg")
    monkeypatch.setattr(tarfile.TarInfo, "issparse", lambda self: False)
    with pytest.raises(PackageError, match="more than the package's own"):
        extract_archive(bomb, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_the_configured_maximum_caps_the_unpacked_total(apkg: Path, tmp_path: Path) -> None:
    with pytest.raises(PackageError, match=r"exceeds the 100 bytes limit \(lifecycle"):
        unpack_package(apkg, tmp_path / "dest", max_bytes=100)
    assert not (tmp_path / "dest").exists()


def _constant_attribute(model: onnx.ModelProto) -> onnx.ModelProto:
    """The external tensor moved from the initializers into a Constant node's value."""
    tensor = model.graph.initializer.pop()
    model.graph.node.insert(0, helper.make_node("Constant", [], ["W"], name="c", value=tensor))
    return model


def _inside_a_subgraph(model: onnx.ModelProto) -> onnx.ModelProto:
    """The external tensor as an initializer of an If node's branch."""
    tensor = model.graph.initializer.pop()
    branch = helper.make_graph(
        [helper.make_node("Identity", ["W"], ["branch_out"])],
        "branch",
        [],
        [helper.make_tensor_value_info("branch_out", TensorProto.UINT8, [LEAK_BYTES])],
        initializer=[tensor],
    )
    model.graph.initializer.append(numpy_helper.from_array(np.array(True), "t"))
    model.graph.node[0].CopyFrom(
        helper.make_node("If", ["t"], ["leak"], then_branch=branch, else_branch=branch)
    )
    return model


def _package_of(model: onnx.ModelProto, key: Path, out: Path) -> Path:
    folder = out.parent / f"{out.stem}-folder"
    folder.mkdir()
    onnx.save(model, str(folder / "model.onnx"))
    (folder / "model.json").write_text(leaky_manifest("leaky", 1).model_dump_json())
    return signed_package(folder, key, out)


@pytest.mark.parametrize(
    ("location", "shape"),
    [
        (TRAVERSAL, "initializer"),
        ("/etc/passwd", "initializer"),
        (TRAVERSAL, "sparse initializer"),
        (TRAVERSAL, "constant attribute"),
        (TRAVERSAL, "subgraph"),
        ("weights/../../../../etc/passwd", "initializer"),
        ("model.sig", "initializer"),
    ],
)
def test_external_data_outside_the_package_is_refused(
    keys: tuple[Path, Path], tmp_path: Path, location: str, shape: str
) -> None:
    out = tmp_path / "leaky-1.apkg"
    if shape in ("initializer", "sparse initializer"):
        leaky_package(location, keys[0], out, sparse=shape == "sparse initializer")
    else:
        change = _constant_attribute if shape == "constant attribute" else _inside_a_subgraph
        _package_of(change(leaky_graph(location)), keys[0], out)
    # Signed with the trusted key: only the external-data check stands in the way.
    with pytest.raises(PackageError, match="expected the flat name of a data file") as refused:
        verify_package(out, [keys[1]])
    assert location[:40] in str(refused.value)


def test_external_data_must_be_a_file_of_the_package(
    keys: tuple[Path, Path], tmp_path: Path
) -> None:
    package = leaky_package("weights.bin", keys[0], tmp_path / "leaky-1.apkg")
    with pytest.raises(PackageError, match=r"'weights\.bin': expected that file beside the model"):
        verify_package(package, [keys[1]])


def test_the_check_does_not_need_onnx_runtime(keys: tuple[Path, Path], tmp_path: Path) -> None:
    """Whatever ONNX Runtime release is installed, the package check refuses on its own."""
    package = leaky_package(TRAVERSAL, keys[0], tmp_path / "leaky-1.apkg")
    script = (
        "import sys; sys.modules['onnxruntime'] = None\n"  # any import of it fails
        "from pathlib import Path\n"
        "from appliance.errors import PackageError\n"
        "from appliance.package import verify_package\n"
        "try:\n"
        f"    verify_package(Path({str(package)!r}), [Path({str(keys[1])!r})])\n"
        "except PackageError as exc:\n"
        "    print('refused:', exc); sys.exit(3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode == 3, result.stderr
    assert "refused:" in result.stdout and "external data location" in result.stdout


def _folder_with_external(tmp_path: Path, location: str) -> Path:
    folder = tmp_path / "affine" / "1"
    folder.mkdir(parents=True)
    onnx.save(leaky_graph(location), str(folder / "model.onnx"))
    return folder


def test_an_unsigned_folder_may_keep_weights_in_a_subfolder(tmp_path: Path) -> None:
    folder = _folder_with_external(tmp_path, "weights/w.bin")
    (folder / "weights").mkdir()
    (folder / "weights" / "w.bin").write_bytes(bytes(LEAK_BYTES))
    check_unsigned_folder(folder)  # Triton-style repositories do this


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_link_out_of_the_folder_is_refused(tmp_path: Path, link: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"s" * LEAK_BYTES)
    folder = _folder_with_external(tmp_path, "w.bin")
    (os.symlink if link == "symlink" else os.link)(secret, folder / "w.bin")
    message = "resolves outside" if link == "symlink" else "other hard links"
    with pytest.raises(PackageError, match=message):
        check_unsigned_folder(folder)


def test_an_external_range_beyond_the_file_is_refused(tmp_path: Path) -> None:
    folder = _folder_with_external(tmp_path, "w.bin")
    (folder / "w.bin").write_bytes(bytes(LEAK_BYTES - 1))
    with pytest.raises(PackageError, match="outside the file's 63 bytes"):
        check_unsigned_folder(folder)


def test_a_package_with_flat_external_data_builds_and_verifies(
    onnx_model: Path, manifest: Manifest, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    model = onnx.load(str(onnx_model))
    external = tmp_path / "ext" / "tiny.onnx"
    external.parent.mkdir()
    onnx.save(
        model, str(external), save_as_external_data=True, location="tiny.weights", size_threshold=0
    )
    package = build_package(external, manifest, keys[0], tmp_path / "out")
    with tarfile.open(package) as tar:
        assert "tiny.weights" in tar.getnames()
    assert verify_package(package, [keys[1]]).name == "tiny"


def test_a_manifest_shape_that_differs_from_the_graph_is_refused(
    onnx_model: Path, manifest: Manifest, apkg: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    wrong = manifest.model_copy(
        update={"inputs": (manifest.inputs[0].model_copy(update={"shape": (-1, 5)}),)}
    )
    with pytest.raises(PackageError, match=r"'input' has shape \[-1, 5\]; expected \[-1, 4\]"):
        build_package(onnx_model, wrong, keys[0], tmp_path / "built")

    def widen(folder: Path) -> None:
        raw = json.loads((folder / "model.json").read_text())
        raw["inputs"][0]["shape"] = [-1, 5]
        (folder / "model.json").write_text(json.dumps(raw))

    resigned = resigned_package(apkg, keys[0], tmp_path / "tiny-3.apkg", widen)
    with pytest.raises(PackageError, match=r"has shape \[-1, 5\]; expected \[-1, 4\]"):
        verify_package(resigned, [keys[1]])


def test_the_tamper_message_names_files_with_short_hex_digests(
    apkg: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "pkg"
    unpack_package(apkg, folder)
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / "model.onnx").write_bytes(bytes(data))
    (folder / "extra.txt").write_text("rides along")
    with pytest.raises(SignatureError) as refused:
        verify_package(folder, [keys[1]])
    message = str(refused.value)
    assert re.search(
        r"model\.onnx: expected sha256 [0-9a-f]{12}\.\.\., got [0-9a-f]{12}\.\.\.", message
    )
    assert "extra.txt: not covered by the signature" in message
    assert "\\x" not in message and "digest_value" not in message
