"""The signed package of a text-generation variant: its onnxruntime-genai folder.

The folder goes in whole through ``appliance.package``'s ``build_generative_package``
(every file signed, the flat-folder and external-data checks of any package); the
manifest says ``task: text-generation``, and its golden cases are prompts from the
recipe's evaluation text with their greedy continuations (token ids, onnxruntime-genai's
``Generator``), as the box checks them before activation.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from compress.errors import CompressError
from compress.lm.source import LmSource
from compress.recipe import LmRecipe
from compress.search import SearchResult

TASK = "text-generation"


def _metrics(variant: Any) -> dict[str, float]:
    m = variant.metrics
    return {**m.scores, "size_mb": m.size_mb, "memory_mb": m.memory_mb}


def package_lm(
    recipe: LmRecipe, result: SearchResult, source: LmSource, *, key: Path, out_dir: Path
) -> Path:
    from appliance import __version__
    from appliance.package import Manifest, Provenance, build_generative_package
    from appliance.package.generative import (
        GENERATIVE_INPUTS,
        GENERATIVE_OUTPUTS,
        make_generation_golden,
    )

    selected = result.selected
    if selected is None or recipe.package is None:
        raise CompressError("nothing to package")
    folder = selected.path
    prompts = [_prompt(text) for text in _golden_texts(recipe, recipe.package.golden_cases)]
    manifest = Manifest(
        name=recipe.name,
        version=recipe.version,
        task=TASK,
        inputs=GENERATIVE_INPUTS,
        outputs=GENERATIVE_OUTPUTS,
        max_batch_size=0,  # the engine batches step by step
        provenance=Provenance(
            source_model=source.description,
            recipe=recipe.model_dump(mode="json", exclude={"base_dir"}),
            metrics_before=_metrics(result.baseline),
            metrics_after=_metrics(selected),
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            tool=f"appliance {__version__}",
        ),
        generation_golden=make_generation_golden(folder, prompts, recipe.package.golden_tokens),
    )
    return build_generative_package(folder, manifest, key, out_dir)


def _prompt(text: str, words: int = 4) -> str:
    """The opening words of an evaluation passage: a prompt the model continues."""
    return " ".join(text.split()[:words])


def _golden_texts(recipe: LmRecipe, n: int) -> list[str]:
    from compress.lm.text import load_text

    text = load_text(recipe.data.eval, recipe.resolve(recipe.data.eval.path))
    return text.passages[:n]


__all__ = ["TASK", "package_lm"]
