"""Build, unpack and verify model packages (DESIGN.md, "Model package (.apkg)").

``build_package`` stages ``model.onnx`` (with any external data files), ``model.json``,
any files shipped beside the model (an embedding model's tokenizer) and the signature
over all of them in a temporary folder, and writes ``NAME-VERSION.apkg`` atomically.
``build_generative_package`` does the same for an onnxruntime-genai folder (every file
of it, flat; ``generative``).
``unpack_package`` extracts safely; ``verify_package`` checks the signature against
trusted keys, that the manifest matches the model (input and output names, datatypes
and shapes) and that external data names only signed files of the package
(``external``). ``verify_model_folder`` does the same for a version folder on disk,
signed package or signed Triton-style folder, and ``check_unsigned_folder`` what an
unsigned Triton-style folder must pass. The lifecycle (push, stage, self-test,
activate) lives in the daemon and uses these.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from appliance.embedding import TOKENIZER_FILE
from appliance.errors import PackageError
from appliance.package._onnx_specs import graph_specs, load_graph
from appliance.package.archive import MAX_PACKAGE_BYTES, extract_archive, write_archive
from appliance.package.external import check_external_data, check_location, external_refs
from appliance.package.generative import check_genai_config, is_generative_folder
from appliance.package.manifest import (
    FILE_NAME,
    GENAI_CONFIG_NAME,
    MANIFEST_NAME,
    MODEL_NAME,
    SIGNATURE_NAME,
    TEXT_GENERATION,
    Manifest,
    TensorSpec,
    read_manifest,
    write_manifest,
)
from appliance.package.signing import sign_folder, verify_folder

PACKAGE_SUFFIX = ".apkg"


def package_filename(manifest: Manifest) -> str:
    return f"{manifest.name}-{manifest.version}{PACKAGE_SUFFIX}"


def specs_from_onnx(onnx_path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """(inputs, outputs) of an ONNX model, V2 datatypes, -1 for dynamic dimensions."""
    return graph_specs(load_graph(Path(onnx_path)))


def _stage_extra(files: Sequence[Path], manifest: Manifest, folder: Path) -> None:
    """Files shipped beside the model (an embedding model's tokenizer), flat and signed."""
    for path in files:
        if not path.is_file():
            raise PackageError(f"expected a file to include at {path}, found none")
        if (folder / path.name).exists():
            raise PackageError(f"{path}: the package already holds a file named {path.name!r}")
        shutil.copyfile(path, folder / path.name)
    if manifest.task == "embedding" and not (folder / TOKENIZER_FILE).is_file():
        raise PackageError(
            f"an embedding package carries its tokenizer: expected {TOKENIZER_FILE} among "
            f"the included files, got {sorted(p.name for p in files) or 'none'}"
        )


def _stage(onnx_path: Path, manifest: Manifest, folder: Path) -> None:
    model = load_graph(onnx_path)
    inputs, outputs = graph_specs(model)
    _check_specs(manifest, inputs, outputs)
    shutil.copyfile(onnx_path, folder / MODEL_NAME)
    for ref in external_refs(model):
        check_location(ref, flat=True)
        source = onnx_path.parent / ref.location
        if not source.is_file():
            raise PackageError(f"{onnx_path}: external data file {ref.location!r} is missing")
        if not (folder / ref.location).exists():
            shutil.copyfile(source, folder / ref.location)
    check_external_data(model, folder, flat=True)  # offsets and lengths, in the copies
    write_manifest(manifest, folder)


def _check_specs(
    manifest: Manifest, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> None:
    """The manifest must describe the graph it ships with, or serving would reject requests.

    Names, datatypes and shapes (-1 for a dynamic dimension) must all agree.
    """
    for kind, declared, actual in (
        ("inputs", manifest.inputs, inputs),
        ("outputs", manifest.outputs, outputs),
    ):
        if {s.name: s.datatype for s in declared} != {s.name: s.datatype for s in actual}:
            raise PackageError(
                f"model.json {kind}: expected {[(s.name, s.datatype) for s in actual]} "
                f"(from the ONNX graph), got {[(s.name, s.datatype) for s in declared]}"
            )
        graph_shapes = {s.name: list(s.shape) for s in actual}
        for spec in declared:
            if list(spec.shape) != graph_shapes[spec.name]:
                raise PackageError(
                    f"model.json {kind}: {spec.name!r} has shape {list(spec.shape)}; expected "
                    f"{graph_shapes[spec.name]} from the ONNX graph (-1: dynamic)"
                )


def build_package(
    onnx_path: Path,
    manifest: Manifest,
    private_key: Path,
    out_path: Path,
    extra_files: Sequence[Path] = (),
) -> Path:
    """Write the signed ``NAME-VERSION.apkg`` and return its path.

    ``out_path`` is a folder (the file is named for the manifest) or a file path ending
    in ``.apkg``. The manifest's inputs/outputs must match the graph (see
    ``specs_from_onnx``). ``extra_files`` go into the package beside the model under
    their own names, signed with it (``tokenizer.json`` and friends of an embedding model).
    """
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if not onnx_path.is_file():
        raise PackageError(f"expected an ONNX model at {onnx_path}, found no file")
    if out_path.suffix != PACKAGE_SUFFIX:
        out_path = out_path / package_filename(manifest)
    with tempfile.TemporaryDirectory(prefix="apkg-build-") as tmp:
        folder = Path(tmp) / "pkg"
        folder.mkdir()
        _stage(onnx_path, manifest, folder)
        _stage_extra([Path(p) for p in extra_files], manifest, folder)
        sign_folder(folder, Path(private_key))
        return write_archive(folder, out_path)


def build_generative_package(
    folder: Path, manifest: Manifest, private_key: Path, out_path: Path
) -> Path:
    """Write the signed package of an onnxruntime-genai folder; return its path.

    Every file of ``folder`` goes in under its own name (the builder's output is flat);
    a subfolder, a link, or a file named like the manifest or the signature is refused.
    ``genai_config.json`` must name only files of the folder and the model's external
    data must be flat files of it, as in any package.
    """
    folder, out_path = Path(folder), Path(out_path)
    if not is_generative_folder(folder):
        raise PackageError(f"expected {GENAI_CONFIG_NAME} in {folder}, found none")
    if manifest.task != TEXT_GENERATION:
        raise PackageError(
            f"a folder with {GENAI_CONFIG_NAME} packages as task {TEXT_GENERATION!r}, "
            f"got {manifest.task!r}"
        )
    if manifest.generation_golden is None:
        raise PackageError("a text-generation package carries golden prompts; got none")
    if out_path.suffix != PACKAGE_SUFFIX:
        out_path = out_path / package_filename(manifest)
    with tempfile.TemporaryDirectory(prefix="apkg-build-") as tmp:
        staged = Path(tmp) / "pkg"
        staged.mkdir()
        _stage_folder(folder, staged)
        _check_generative(staged)
        write_manifest(manifest, staged)
        sign_folder(staged, Path(private_key))
        return write_archive(staged, out_path)


def _stage_folder(folder: Path, staged: Path) -> None:
    for path in sorted(folder.iterdir()):
        if path.is_symlink() or not path.is_file():
            raise PackageError(
                f"{path}: a package holds only regular files, flat; expected no links or "
                "subfolders in the model folder"
            )
        if not FILE_NAME.match(path.name) or path.name in (MANIFEST_NAME, SIGNATURE_NAME):
            raise PackageError(
                f"{path}: expected a plain file name other than {MANIFEST_NAME} and "
                f"{SIGNATURE_NAME} (the package writes those)"
            )
        shutil.copyfile(path, staged / path.name)


def _check_generative(folder: Path) -> None:
    """The config names only files of the package; the weights are flat files of it."""
    check_genai_config(folder, flat=True)
    check_external_data(load_graph(folder / MODEL_NAME), folder, flat=True)


def unpack_package(
    apkg: Path,
    dest_dir: Path,
    trusted_keys: Sequence[Path] | None = None,
    *,
    max_bytes: int = MAX_PACKAGE_BYTES,
) -> Manifest:
    """Extract ``apkg`` into ``dest_dir`` safely and return its manifest.

    With ``trusted_keys`` the signature is verified too (``SignatureError`` on failure).
    ``max_bytes`` caps the unpacked total (the archive's own size caps it as well).
    """
    names = extract_archive(Path(apkg), Path(dest_dir), max_bytes)
    for required in (MODEL_NAME, MANIFEST_NAME):
        if required not in names:
            raise PackageError(f"{apkg}: expected {required} in the package, found none")
    if trusted_keys is not None:
        verify_folder(Path(dest_dir), trusted_keys)
    return read_manifest(Path(dest_dir))


def verify_package(
    apkg_or_folder: Path, trusted_keys: Sequence[Path], *, max_bytes: int = MAX_PACKAGE_BYTES
) -> Manifest:
    """Verify a package file or an unpacked folder; return its manifest.

    Checks, in order: safe layout, signature by one of ``trusted_keys`` over every file,
    a valid manifest, that the manifest's tensors match the ONNX graph, and that the
    graph's external data names only files of the package.
    """
    path = Path(apkg_or_folder)
    if path.is_dir():
        return _verify_folder(path, trusted_keys)
    with tempfile.TemporaryDirectory(prefix="apkg-verify-") as tmp:
        folder = Path(tmp) / "pkg"
        unpack_package(path, folder, max_bytes=max_bytes)
        return _verify_folder(folder, trusted_keys)


def _verify_folder(folder: Path, trusted_keys: Sequence[Path]) -> Manifest:
    verify_folder(folder, trusted_keys)
    manifest = read_manifest(folder)
    if not (folder / MODEL_NAME).is_file():
        raise PackageError(f"{folder}: expected {MODEL_NAME}, found none")
    if manifest.task == TEXT_GENERATION:
        # Its graph's tensors are onnxruntime-genai's (input_ids, past key values); the
        # manifest lists the V2 tensors it is served with.
        _check_generative(folder)
        return manifest
    model = load_graph(folder / MODEL_NAME)
    inputs, outputs = graph_specs(model)
    _check_specs(manifest, inputs, outputs)
    check_external_data(model, folder, flat=True)
    return manifest


def verify_model_folder(folder: Path, trusted_keys: Sequence[Path]) -> Manifest | None:
    """A signed version folder on disk: a package (``model.json``) or Triton-style.

    Returns the manifest of a package, ``None`` for a signed folder without one (its
    external data may then sit in subfolders, as Triton repositories keep it).
    """
    folder = Path(folder)
    if (folder / MANIFEST_NAME).is_file():
        return _verify_folder(folder, trusted_keys)
    verify_folder(folder, trusted_keys)
    check_unsigned_folder(folder)
    return None


def check_unsigned_folder(folder: Path) -> None:
    """What a Triton-style folder must pass even unsigned: external data stays inside it,
    and so does every file a ``genai_config.json`` names."""
    model = load_graph(Path(folder) / MODEL_NAME)
    check_external_data(model, Path(folder), flat=False)
    if is_generative_folder(folder):
        check_genai_config(Path(folder), flat=False)


__all__ = [
    "PACKAGE_SUFFIX",
    "build_generative_package",
    "build_package",
    "check_unsigned_folder",
    "package_filename",
    "specs_from_onnx",
    "unpack_package",
    "verify_model_folder",
    "verify_package",
]
