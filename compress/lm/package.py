"""The signed package of a text-generation variant: its onnxruntime-genai folder.

``model.onnx`` (with ``model.onnx.data``) goes in through ``appliance.package``'s
``build_package``; every other file of the folder (``genai_config.json``, tokenizer
files, ``chat_template.jinja``) rides along as an extra file, all signed together. The
manifest says ``task: text-generation``; its golden cases are prompts (``input_ids``)
with their greedy continuations (``output_ids``, exact token ids) from
onnxruntime-genai, as the box checks them before activation.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from compress.errors import CompressError
from compress.lm.source import LmSource
from compress.recipe import LmRecipe
from compress.search import SearchResult

TASK = "text-generation"
_MODEL_FILES = ("model.onnx", "model.onnx.data")


def greedy_continuation(folder: Path, prompt: list[int], tokens: int) -> list[int]:
    """The ``tokens`` token ids onnxruntime-genai generates greedily after ``prompt``."""
    import onnxruntime_genai as og  # type: ignore[import-untyped]

    model = og.Model(str(folder))
    params = og.GeneratorParams(model)
    params.set_search_options(
        max_length=len(prompt) + tokens, min_length=len(prompt) + tokens, do_sample=False
    )
    generator = og.Generator(model, params)
    generator.append_tokens(np.asarray(prompt, dtype=np.int32))
    while not generator.is_done():
        generator.generate_next_token()
    return [int(t) for t in generator.get_sequence(0)[len(prompt) :]]


def golden_cases(folder: Path, prompts: list[list[int]], tokens: int) -> Any:
    from appliance.package import Golden, GoldenCase, TensorData

    cases = []
    for prompt in prompts:
        out = greedy_continuation(folder, prompt, tokens)
        cases.append(
            GoldenCase(
                inputs={
                    "input_ids": TensorData(datatype="INT32", shape=(len(prompt),), data=prompt)
                },
                outputs={"output_ids": TensorData(datatype="INT32", shape=(len(out),), data=out)},
            )
        )
    return Golden(rtol=0.0, atol=0.0, cases=cases)


def _metrics(variant: Any) -> dict[str, float]:
    m = variant.metrics
    return {**m.scores, "size_mb": m.size_mb, "memory_mb": m.memory_mb}


def package_lm(
    recipe: LmRecipe, result: SearchResult, source: LmSource, *, key: Path, out_dir: Path
) -> Path:
    from appliance import __version__
    from appliance.package import Manifest, Provenance, build_package, specs_from_onnx

    selected = result.selected
    if selected is None or recipe.package is None:
        raise CompressError("nothing to package")
    folder = selected.path
    inputs, outputs = specs_from_onnx(folder / "model.onnx")
    prompts = [
        source.tokenizer.encode(text, add_special_tokens=False)[:16]
        for text in _golden_texts(recipe, recipe.package.golden_cases)
    ]
    manifest = Manifest(
        name=recipe.name,
        version=recipe.version,
        task=TASK,
        inputs=inputs,
        outputs=outputs,
        max_batch_size=0,
        provenance=Provenance(
            source_model=source.description,
            recipe=recipe.model_dump(mode="json", exclude={"base_dir"}),
            metrics_before=_metrics(result.baseline),
            metrics_after=_metrics(selected),
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            tool=f"appliance {__version__}",
        ),
        golden=golden_cases(folder, prompts, recipe.package.golden_tokens),
    )
    extra = sorted(p for p in folder.iterdir() if p.is_file() and p.name not in _MODEL_FILES)
    return build_package(folder / "model.onnx", manifest, key, out_dir, extra_files=extra)


def _golden_texts(recipe: LmRecipe, n: int) -> list[str]:
    from compress.lm.text import load_text

    text = load_text(recipe.data.eval, recipe.resolve(recipe.data.eval.path))
    return text.passages[:n]


__all__ = ["TASK", "golden_cases", "greedy_continuation", "package_lm"]
