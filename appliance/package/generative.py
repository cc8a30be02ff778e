"""What a ``task: text-generation`` package holds beyond a classifier's, and its golden cases.

Such a package carries the folder onnxruntime-genai's model builder writes
(``genai_config.json``, ``model.onnx`` + ``model.onnx.data``, tokenizer files,
``chat_template.jinja``), flat and signed like every package (DESIGN.md, "Generative
models"). This module owns:

- the V2 tensors such a model is served with (Triton's vLLM backend, ``src/model.py``),
  written into the manifest so ``appliance package inspect`` and the metadata agree;
- the checks on ``genai_config.json``: every file it names (the decoder's ``filename``
  and any other ``filename`` key) is the plain name of a file beside it, so a hostile
  config cannot make onnxruntime-genai open a file outside the package;
- the golden cases: prompts with the token ids of their greedy continuations, computed
  in process with onnxruntime-genai's ``Generator`` (``do_sample = false``).

onnxruntime-genai is imported when a golden case is made, never at import time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from appliance.errors import PackageError
from appliance.package.manifest import (
    FILE_NAME,
    GENAI_CONFIG_NAME,
    MANIFEST_NAME,
    MODEL_NAME,
    SIGNATURE_NAME,
    GenerationCase,
    GenerationGolden,
    TensorSpec,
)

#: Prompts a package is checked with when the builder names none: plain openings of
#: clinical notes, synthetic, short enough for any context length.
DEFAULT_PROMPTS = (
    "Patient reports",
    "History of",
    "Plan: start",
)
#: Tokens generated per golden prompt by default: enough to catch a model that computes
#: something else, few enough that the check costs well under a second on a CPU.
DEFAULT_GOLDEN_TOKENS = 16

#: Inputs and outputs of a generative model over KServe V2 (DESIGN.md, "V2 tensors").
GENERATIVE_INPUTS = (
    TensorSpec(name="text_input", datatype="BYTES", shape=(1,)),
    TensorSpec(name="stream", datatype="BOOL", shape=(1,)),
    TensorSpec(name="sampling_parameters", datatype="BYTES", shape=(1,)),
    TensorSpec(name="exclude_input_in_output", datatype="BOOL", shape=(1,)),
    TensorSpec(name="return_finish_reason", datatype="BOOL", shape=(1,)),
    TensorSpec(name="return_num_input_tokens", datatype="BOOL", shape=(1,)),
    TensorSpec(name="return_num_output_tokens", datatype="BOOL", shape=(1,)),
)
GENERATIVE_OUTPUTS = (
    TensorSpec(name="text_output", datatype="BYTES", shape=(-1,)),
    TensorSpec(name="finish_reason", datatype="BYTES", shape=(-1,)),
    TensorSpec(name="num_input_tokens", datatype="UINT32", shape=(-1,)),
    TensorSpec(name="num_output_tokens", datatype="UINT32", shape=(-1,)),
)

_RESERVED = (MANIFEST_NAME, SIGNATURE_NAME)
#: What onnxruntime-genai raises: plain RuntimeErrors (and ValueErrors) from its C++ core.
_OG_ERRORS = (RuntimeError, ValueError)


def is_generative_folder(folder: Path) -> bool:
    """A folder onnxruntime-genai loads: it holds ``genai_config.json``."""
    return (Path(folder) / GENAI_CONFIG_NAME).is_file()


def read_genai_config(folder: Path) -> dict[str, Any]:
    path = Path(folder) / GENAI_CONFIG_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PackageError(f"expected {GENAI_CONFIG_NAME} in {folder}, found none") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"{path}: expected a JSON object, could not read it: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict):
        raise PackageError(f"{path}: expected a JSON object with a 'model' section")
    return raw


def eos_token_ids(config: dict[str, Any]) -> frozenset[int]:
    """The model's end-of-sequence ids (``model.eos_token_id``: one id or a list)."""
    value = config["model"].get("eos_token_id", [])
    values = value if isinstance(value, list) else [value]
    return frozenset(int(v) for v in values if isinstance(v, int))


def check_genai_config(folder: Path, *, flat: bool) -> dict[str, Any]:
    """Refuse a ``genai_config.json`` that names a file the folder does not hold.

    The decoder must be ``model.onnx`` (the repository's model file). ``flat``: the
    rules of a package (plain names of files beside the config, not the manifest or the
    signature); otherwise a relative path inside the folder (a Triton-style folder).
    """
    folder = Path(folder)
    config = read_genai_config(folder)
    decoder = config["model"].get("decoder")
    if not isinstance(decoder, dict) or decoder.get("filename") != MODEL_NAME:
        got = decoder.get("filename") if isinstance(decoder, dict) else None
        raise PackageError(
            f"{GENAI_CONFIG_NAME}: expected model.decoder.filename {MODEL_NAME!r}, "
            f"got {str(got)[:200]!r}"
        )
    for where, name in _filenames(config, "genai_config"):
        _check_named_file(folder, where, name, flat=flat)
    return config


def _filenames(value: Any, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "filename":
                yield f"{where}.{key}", item
            else:
                yield from _filenames(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _filenames(item, f"{where}[{index}]")


def _check_named_file(folder: Path, where: str, name: Any, *, flat: bool) -> None:
    if not isinstance(name, str) or not name:
        raise PackageError(f"{GENAI_CONFIG_NAME}: {where}: expected a file name, got {name!r:.80}")
    if flat:
        if not FILE_NAME.match(name) or name in _RESERVED:
            raise PackageError(
                f"{GENAI_CONFIG_NAME}: {where} = {name[:200]!r}: expected the plain name of "
                "a file in the package (no folders, no '..')"
            )
    else:
        path = PurePosixPath(name)
        if path.is_absolute() or "\\" in name or ".." in path.parts:
            raise PackageError(
                f"{GENAI_CONFIG_NAME}: {where} = {name[:200]!r}: expected a relative path "
                "inside the model's folder (no '..', no absolute path)"
            )
    target = folder / name
    if target.is_symlink() or not target.is_file():
        raise PackageError(
            f"{GENAI_CONFIG_NAME}: {where} = {name[:200]!r}: expected a regular file "
            "beside the config, found none"
        )


# ------------------------------------------------------------------------------ golden


def greedy_continuations(
    folder: Path, prompts: Sequence[str], max_tokens: int
) -> list[tuple[int, ...]]:
    """Each prompt's greedy continuation as token ids, end-of-sequence dropped.

    onnxruntime-genai's ``Generator`` on the CPU provider, in process: the reference the
    box's engine is compared with before a version may serve.
    """
    folder = Path(folder)
    try:
        decoder = _GreedyDecoder(folder)
        return [decoder.continue_(prompt, max_tokens) for prompt in prompts]
    except _OG_ERRORS as exc:
        raise PackageError(f"{folder}: onnxruntime-genai could not run the model: {exc}") from exc


class _GreedyDecoder:
    """One loaded model and tokenizer; each prompt decoded by its own ``Generator``."""

    def __init__(self, folder: Path):
        import onnxruntime_genai as og  # type: ignore[import-untyped]

        self._og = og
        self._eos = eos_token_ids(read_genai_config(folder))
        config = og.Config(str(folder))
        config.clear_providers()  # the build box's GPU must not decide the expectation
        self._model = og.Model(config)
        self._tokenizer = og.Tokenizer(self._model)

    def continue_(self, prompt: str, max_tokens: int) -> tuple[int, ...]:
        ids = [int(t) for t in self._tokenizer.encode(prompt)]
        if not ids:
            raise PackageError(f"golden prompt {prompt[:40]!r}: the tokenizer gave no tokens")
        params = self._og.GeneratorParams(self._model)
        params.set_search_options(do_sample=False, max_length=len(ids) + max_tokens)
        generator = self._og.Generator(self._model, params)
        generator.append_tokens(ids)
        while not generator.is_done():
            generator.generate_next_token()
        continuation = [int(t) for t in generator.get_sequence(0)[len(ids) :]]
        return strip_eos(continuation, self._eos)


def strip_eos(token_ids: Sequence[int], eos: frozenset[int]) -> tuple[int, ...]:
    """The ids before the first end-of-sequence id (engines differ on emitting it)."""
    out: list[int] = []
    for token in token_ids:
        if token in eos:
            break
        out.append(int(token))
    return tuple(out)


def make_generation_golden(
    folder: Path,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    max_tokens: int = DEFAULT_GOLDEN_TOKENS,
) -> GenerationGolden:
    """Golden cases for the on-box self-test of a generative folder."""
    if not prompts:
        raise PackageError("expected at least one golden prompt, got none")
    if max_tokens < 1:
        raise PackageError(f"expected golden max tokens of at least 1, got {max_tokens}")
    continuations = greedy_continuations(folder, prompts, max_tokens)
    return GenerationGolden(
        cases=[
            GenerationCase(prompt=prompt, max_tokens=max_tokens, token_ids=ids)
            for prompt, ids in zip(prompts, continuations, strict=True)
        ]
    )


__all__ = [
    "DEFAULT_GOLDEN_TOKENS",
    "DEFAULT_PROMPTS",
    "GENERATIVE_INPUTS",
    "GENERATIVE_OUTPUTS",
    "check_genai_config",
    "eos_token_ids",
    "greedy_continuations",
    "is_generative_folder",
    "make_generation_golden",
    "read_genai_config",
    "strip_eos",
]
