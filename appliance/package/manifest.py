"""``model.json``: the manifest inside every model package (DESIGN.md, "Model package").

Owns the schema and its validation only; building, signing and verifying packages live
beside it. The serving core reads the manifest for tensor specs, labels and batch
limits; the lifecycle reads the golden cases for the on-box self-test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from appliance.errors import PackageError

FORMAT: Final = "apkg/1"
MANIFEST_NAME = "model.json"
MODEL_NAME = "model.onnx"
SIGNATURE_NAME = "model.sig"
#: The task of a causal language model served through onnxruntime-genai (DESIGN.md,
#: "Generative models"); its folder holds ``genai_config.json`` beside the model.
TEXT_GENERATION = "text-generation"
GENAI_CONFIG_NAME = "genai_config.json"
#: The name of every file a package holds: flat (no folders), plain, no leading dot.
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")

#: V2 datatypes the appliance serves (BYTES is declared but no packaged model uses it).
Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TensorSpec(_Frozen):
    """One input or output: V2 datatype and shape, -1 for a dynamic dimension."""

    name: str = Field(min_length=1)
    datatype: Datatype
    shape: tuple[int, ...]


class TensorData(_Frozen):
    """A small tensor written out in JSON (golden cases)."""

    datatype: Datatype
    shape: tuple[int, ...]
    data: list[Any]  # flat, row-major


class GoldenCase(_Frozen):
    inputs: dict[str, TensorData]
    outputs: dict[str, TensorData]


class Golden(_Frozen):
    """Inputs with expected outputs, checked on the box before a version may serve.

    The tolerance is numpy's ``allclose``: |got - expected| <= atol + rtol * |expected|.
    """

    rtol: float = Field(default=1e-3, ge=0)
    atol: float = Field(default=1e-4, ge=0)
    cases: list[GoldenCase] = Field(min_length=1)


class GenerationCase(_Frozen):
    """A prompt and the token ids of its greedy continuation (prompt excluded, no
    end-of-sequence token), as onnxruntime-genai's Generator gave them at build time."""

    prompt: str = Field(min_length=1)  # synthetic text chosen at build, never patient data
    max_tokens: int = Field(ge=1)
    token_ids: tuple[int, ...]


class GenerationGolden(_Frozen):
    """Golden cases of a ``task: text-generation`` package, checked on the box before a
    version may serve: the same prompts, decoded greedily by the engine that will serve,
    must give exactly these token ids."""

    cases: list[GenerationCase] = Field(min_length=1)


class Provenance(_Frozen):
    source_model: str = ""
    recipe: dict[str, Any] | None = None
    metrics_before: dict[str, float] = Field(default_factory=dict)
    metrics_after: dict[str, float] = Field(default_factory=dict)
    created: str = ""  # ISO 8601, UTC
    tool: str = ""  # "appliance 0.1.0"


class Embedding(_Frozen):
    """How a ``task: embedding`` package turns text into one vector: its tokenizer
    (``tokenizer.json``, shipped and signed with the model) and the pooling over the
    model's token outputs."""

    pooling: Literal["mean", "cls"] = "mean"  # mean: over the attention mask
    normalize: bool = True  # L2, so a dot product is the cosine similarity
    max_length: int | None = Field(default=None, ge=1)  # tokens; None: the tokenizer's


class Manifest(_Frozen):
    format: Literal["apkg/1"] = FORMAT
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    version: int = Field(ge=1)
    #: classification | embedding | regression | text-generation | other
    task: str = "classification"
    inputs: tuple[TensorSpec, ...] = Field(min_length=1)
    outputs: tuple[TensorSpec, ...] = Field(min_length=1)
    labels: tuple[str, ...] | None = None
    max_batch_size: int = Field(default=32, ge=0)  # 0: the model takes no batch axis
    provenance: Provenance = Field(default_factory=Provenance)
    #: Summary statistics of inputs and outputs on calibration data (drift monitoring).
    reference_profile: dict[str, Any] | None = None
    golden: Golden | None = None
    #: Tokenizer and pooling of an embedding model (``task: embedding``); absent: defaults.
    embedding: Embedding | None = None
    #: Prompts with their greedy continuations (``task: text-generation``).
    generation_golden: GenerationGolden | None = None


def read_manifest(folder: Path) -> Manifest:
    """Load and validate ``folder/model.json``; errors name the file and the field."""
    path = folder / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PackageError(f"expected {MANIFEST_NAME} in {folder}, found none") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"{path}: expected a JSON object, could not read it: {exc}") from exc
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise PackageError(f"{path}: {_describe(exc)}") from exc


def write_manifest(manifest: Manifest, folder: Path) -> Path:
    path = folder / MANIFEST_NAME
    path.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{where}: {err['msg']} (got {err.get('input')!r:.60})")
    return "; ".join(parts)
