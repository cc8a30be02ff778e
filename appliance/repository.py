"""The model repository on disk: which models and versions exist, and where.

Two layouts are served, both ``<root>/<model>/<version>/``:

- Triton-style: ``model.onnx`` alone, so an existing ONNX model repository works as it is;
- an unpacked package: ``model.onnx``, ``model.json`` and ``model.sig`` (DESIGN.md).

Versions are positive integers; anything else (including the lifecycle's hidden
``.staging`` folders) is skipped. This module only reads the disk; loading sessions is
``appliance.manager``'s job, writing the repository is the lifecycle's, and which roots
are served (the embedded model's beside the configured one, or not) the lifecycle's
``ServingPolicy``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from appliance.clip import clip, quoted
from appliance.embedding import TOKENIZER_FILE
from appliance.errors import ApplianceError, ModelNotFoundError
from appliance.package.manifest import MANIFEST_NAME, MODEL_NAME, Manifest, read_manifest

log = logging.getLogger(__name__)

#: onnxruntime-genai's model folder marker: tokenizer files there belong to a generative
#: model, not to an encoder.
GENERATIVE_CONFIG = "genai_config.json"
#: The task of a generative model (a package's ``task``, or a folder with the marker).
TEXT_GENERATION = "text-generation"

#: The model shipped inside the package, itself a one-model repository.
EMBEDDED_ROOT = Path(__file__).resolve().parent / "default_model"


@dataclass(frozen=True)
class VersionSource:
    """One version folder, with its manifest when it is a package."""

    name: str
    version: int
    folder: Path
    manifest: Manifest | None = None
    problem: str | None = None  # why it cannot load, when the folder is unusable

    @property
    def model_file(self) -> Path:
        return self.folder / MODEL_NAME

    @property
    def task(self) -> str:
        """The package's task; a Triton-style folder holding ``genai_config.json`` (as
        onnxruntime-genai's builder writes it) is a ``text-generation`` model, and one with
        ``tokenizer.json`` beside its model (as a Hugging Face export writes it) an
        ``embedding`` model."""
        if self.manifest is not None:
            return self.manifest.task
        folder = self.folder
        if (folder / GENERATIVE_CONFIG).is_file():
            return TEXT_GENERATION
        if (folder / TOKENIZER_FILE).is_file():
            return "embedding"
        return ""


class Repository:
    """Read-only view of one or more repository roots (the configured one, the embedded)."""

    def __init__(self, roots: list[Path]):
        self.roots = roots

    def models(self) -> dict[str, dict[int, VersionSource]]:
        """Every model and version; where two roots hold the same version, the first wins."""
        found: dict[str, dict[int, VersionSource]] = {}
        for root in self.roots:
            for name, versions in _scan_root(root).items():
                known = found.setdefault(name, {})
                for number, source in versions.items():
                    known.setdefault(number, source)
        return found

    def versions(self, name: str) -> dict[int, VersionSource]:
        versions = self.models().get(name)
        if not versions:
            roots = ", ".join(str(r) for r in self.roots)
            raise ModelNotFoundError(
                f"no model {quoted(name)} in the repository ({roots}); expected a folder "
                f"{clip(name)}/<version>/{MODEL_NAME}"
            )
        return versions


def _scan_root(root: Path) -> dict[str, dict[int, VersionSource]]:
    if not root.is_dir():
        return {}
    found: dict[str, dict[int, VersionSource]] = {}
    for model_dir in sorted(root.iterdir()):
        if model_dir.name.startswith(".") or not model_dir.is_dir():
            continue
        versions = {
            int(v.name): _source(model_dir.name, int(v.name), v)
            for v in model_dir.iterdir()
            if v.is_dir() and v.name.isdigit() and int(v.name) > 0 and (v / MODEL_NAME).is_file()
        }
        if versions:
            found[model_dir.name] = versions
    return found


def _source(name: str, version: int, folder: Path) -> VersionSource:
    if not (folder / MANIFEST_NAME).is_file():
        return VersionSource(name, version, folder)
    try:
        manifest = read_manifest(folder)
    except ApplianceError as exc:
        return VersionSource(name, version, folder, problem=str(exc))
    if manifest.name != name or manifest.version != version:
        problem = (
            f"{folder}: model.json says {manifest.name} version {manifest.version}, "
            f"expected {name} version {version} from the folder names"
        )
        return VersionSource(name, version, folder, problem=problem)
    return VersionSource(name, version, folder, manifest)


__all__ = ["EMBEDDED_ROOT", "GENERATIVE_CONFIG", "TEXT_GENERATION", "Repository", "VersionSource"]
