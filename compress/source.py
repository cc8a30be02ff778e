"""Load the model a recipe names: a PyTorch module factory with weights, a local Hugging
Face folder, or an ONNX file. Nothing is downloaded; failures are ``SourceModelError``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.errors import SourceModelError
from compress.recipe import Recipe


@dataclass
class SourceModel:
    """The teacher: a torch module (module/HF sources) or only an ONNX file."""

    kind: str  # "module" | "huggingface" | "onnx"
    description: str
    module: nn.Module | None = None
    tokenizer: Any = None
    onnx_path: Path | None = None
    factory: Any = None  # module sources: the callable that builds students


def _factory(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SourceModelError(f"source.module: could not import {module_name!r}: {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise SourceModelError(f"source.module: expected a callable {attr!r} in {module_name}")
    return factory


def _load_module(recipe: Recipe) -> SourceModel:
    spec = recipe.source
    if spec.module is None:
        raise SourceModelError("source.module: missing key")
    factory = _factory(spec.module)
    try:
        model: nn.Module = factory(**spec.kwargs)
    except TypeError as exc:
        raise SourceModelError(f"source.kwargs: {spec.module} rejected them: {exc}") from exc
    if spec.weights is not None:
        path = recipe.resolve(spec.weights)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except FileNotFoundError as exc:
            raise SourceModelError(f"source.weights: no such file {path}") from exc
        except (RuntimeError, OSError, ValueError) as exc:
            raise SourceModelError(
                f"source.weights: {path} does not fit {spec.module}: {exc}"
            ) from exc
    return SourceModel(kind="module", description=spec.module, module=model.eval(), factory=factory)


def _load_huggingface(recipe: Recipe) -> SourceModel:
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    if recipe.source.huggingface is None:
        raise SourceModelError("source.huggingface: missing key")
    folder = recipe.resolve(recipe.source.huggingface)
    if not (folder / "config.json").is_file():
        raise SourceModelError(
            f"source.huggingface: expected a model folder with config.json at {folder}"
        )
    loader = AutoModel if recipe.task == "embedding" else AutoModelForSequenceClassification
    try:
        model = loader.from_pretrained(folder, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise SourceModelError(f"source.huggingface: could not load {folder}: {exc}") from exc
    return SourceModel(
        kind="huggingface", description=folder.name, module=model.eval(), tokenizer=tokenizer
    )


def load_source(recipe: Recipe) -> SourceModel:
    kind = recipe.source.kind
    if kind == "module":
        return _load_module(recipe)
    if kind == "huggingface":
        return _load_huggingface(recipe)
    if recipe.source.onnx is None:
        raise SourceModelError("source.onnx: missing key")
    path = recipe.resolve(recipe.source.onnx)
    if not path.is_file():
        raise SourceModelError(f"source.onnx: no such file {path}")
    return SourceModel(kind="onnx", description=path.name, onnx_path=path)


__all__ = ["SourceModel", "load_source"]
