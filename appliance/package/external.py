"""External data of an ONNX model: which files its tensors name, and which names may load.

An ONNX tensor may keep its bytes in another file (``data_location = EXTERNAL``, with a
``location`` relative to the model, an ``offset`` and a ``length``: ONNX's
``docs/ExternalData.md``). A hostile model names ``../../etc/passwd`` or
``/etc/passwd`` there and, on a runtime that follows the name, returns the file as
model output. ONNX Runtime refuses such names for dense initializers only since 1.24.1
and for sparse ones since 1.27.0, and still follows hard links (1.31.1), so this check
is ours and runs before ONNX Runtime sees the model:

- in a package (``flat=True``) a location must be the flat name of a regular file of
  the package itself: no folder, no ``..``, no absolute path, not the manifest or the
  signature, not a link; the signature covers every file present, so what loads is
  signed;
- in an unsigned Triton-style folder (``flat=False``) a relative path that stays inside
  the version folder, resolved, is allowed (such repositories keep weights in subfolders).

Every tensor of the model is looked at: initializers, sparse initializers (values and
indices), node attributes (tensors and sparse tensors), the subgraphs of control-flow
nodes, local functions and training graphs. Offsets and lengths must lie inside the file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import onnx

from appliance.errors import PackageError
from appliance.package.manifest import FILE_NAME, MANIFEST_NAME, MODEL_NAME, SIGNATURE_NAME

_RESERVED = (MODEL_NAME, MANIFEST_NAME, SIGNATURE_NAME)


@dataclass(frozen=True)
class ExternalRef:
    """One tensor's pointer into another file."""

    tensor: str  # where it sits, e.g. "initializer 'W'" or "node 'c' attribute 'value'"
    location: str
    offset: str = ""
    length: str = ""


def external_refs(model: onnx.ModelProto) -> list[ExternalRef]:
    """Every external-data reference anywhere in ``model``."""
    refs: list[ExternalRef] = []
    for where, tensor in _tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        fields = {entry.key: entry.value for entry in tensor.external_data}
        refs.append(
            ExternalRef(
                tensor=where,
                location=fields.get("location", ""),
                offset=fields.get("offset", ""),
                length=fields.get("length", ""),
            )
        )
    return refs


def external_data_files(model: onnx.ModelProto) -> list[str]:
    """The distinct locations the model's tensors point to, sorted."""
    return sorted({ref.location for ref in external_refs(model)})


def check_location(ref: ExternalRef, *, flat: bool) -> None:
    """The name alone: flat and plain in a package, relative and downward elsewhere."""
    location = ref.location
    if not location:
        raise PackageError(f"{ref.tensor}: external data without a location")
    if flat:
        if not FILE_NAME.match(location) or location in _RESERVED:
            raise PackageError(
                f"{ref.tensor}: external data location {location[:200]!r}: expected the "
                "flat name of a data file in the package (no folders, no '..', not "
                f"{', '.join(_RESERVED)})"
            )
        return
    path = PurePosixPath(location)
    if path.is_absolute() or "\\" in location or ".." in path.parts:
        raise PackageError(
            f"{ref.tensor}: external data location {location[:200]!r}: expected a "
            "relative path inside the model's folder (no '..', no absolute path)"
        )


def check_external_data(model: onnx.ModelProto, folder: Path, *, flat: bool) -> list[str]:
    """Refuse any external reference that could read outside ``folder``; return the files.

    ``flat``: the rules of a package (see the module docstring). Raises ``PackageError``
    naming the tensor, the location and what was expected.
    """
    folder = Path(folder)
    files: set[str] = set()
    for ref in external_refs(model):
        check_location(ref, flat=flat)
        path = folder / ref.location
        if not flat:
            _check_inside(ref, path, folder)
        size = _regular_file_size(ref, path)
        _check_range(ref, size)
        files.add(ref.location)
    return sorted(files)


def _check_inside(ref: ExternalRef, path: Path, folder: Path) -> None:
    resolved, base = os.path.realpath(path), os.path.realpath(folder)
    if os.path.commonpath([resolved, base]) != base:
        raise PackageError(
            f"{ref.tensor}: external data location {ref.location[:200]!r} resolves outside "
            "the model's folder; expected a file inside it"
        )


def _regular_file_size(ref: ExternalRef, path: Path) -> int:
    where = f"{ref.tensor}: external data {ref.location[:200]!r}"
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise PackageError(f"{where}: expected that file beside the model, found none") from None
    except OSError as exc:
        raise PackageError(f"{where}: could not be read ({exc.strerror})") from exc
    if not stat.S_ISREG(info.st_mode):
        raise PackageError(f"{where}: expected a regular file, got a link, folder or device")
    if info.st_nlink > 1:
        # A hard link can be the same inode as any file on the file system.
        raise PackageError(f"{where}: expected a file of its own, got one with other hard links")
    return info.st_size


def _check_range(ref: ExternalRef, size: int) -> None:
    try:
        offset = int(ref.offset or 0)
        length = int(ref.length) if ref.length else size - offset
    except ValueError:
        raise PackageError(
            f"{ref.tensor}: external data offset/length must be integers, got "
            f"{ref.offset[:40]!r}/{ref.length[:40]!r}"
        ) from None
    if offset < 0 or length < 0 or offset + length > size:
        raise PackageError(
            f"{ref.tensor}: external data {ref.location!r}: bytes {offset}..{offset + length} "
            f"are outside the file's {size} bytes"
        )


def _tensors(model: onnx.ModelProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _node_tensors(node)
    for training in model.training_info:
        yield from _graph_tensors(training.initialization)
        yield from _graph_tensors(training.algorithm)


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    for tensor in graph.initializer:
        yield f"initializer {tensor.name[:100]!r}", tensor
    for sparse in graph.sparse_initializer:
        yield from _sparse_tensors(f"sparse initializer {sparse.values.name[:100]!r}", sparse)
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    for attribute in node.attribute:
        where = f"node {node.name[:100]!r} attribute {attribute.name[:100]!r}"
        if attribute.HasField("t"):
            yield where, attribute.t
        for tensor in attribute.tensors:
            yield where, tensor
        if attribute.HasField("sparse_tensor"):
            yield from _sparse_tensors(where, attribute.sparse_tensor)
        for sparse in attribute.sparse_tensors:
            yield from _sparse_tensors(where, sparse)
        if attribute.HasField("g"):
            yield from _graph_tensors(attribute.g)
        for graph in attribute.graphs:
            yield from _graph_tensors(graph)


def _sparse_tensors(
    where: str, sparse: onnx.SparseTensorProto
) -> Iterator[tuple[str, onnx.TensorProto]]:
    yield f"{where} (values)", sparse.values
    yield f"{where} (indices)", sparse.indices


__all__ = [
    "ExternalRef",
    "check_external_data",
    "check_location",
    "external_data_files",
    "external_refs",
]
