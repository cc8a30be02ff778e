"""The source of a text-generation recipe: a local Hugging Face causal LM folder.

Its ``config.json`` ``architectures`` is checked first, against the architectures
onnxruntime-genai's builder converts (``compress.recipe.GENERATIVE_ARCHITECTURES``): any
other is refused before anything is loaded, with a ``SourceModelError`` (exit code 2).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compress.errors import SourceModelError
from compress.recipe import GENERATIVE_ARCHITECTURES, LmRecipe


@dataclass(frozen=True)
class LmSource:
    folder: Path
    architecture: str
    tokenizer: Any  # transformers PreTrainedTokenizerBase

    @property
    def description(self) -> str:
        return f"huggingface:{self.folder.name} ({self.architecture})"

    def model(self) -> Any:
        """A fresh float32 copy of the model, in eval mode."""
        import torch
        from transformers import AutoModelForCausalLM

        try:
            model = AutoModelForCausalLM.from_pretrained(self.folder, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise SourceModelError(f"source.huggingface: cannot load {self.folder}: {exc}") from exc
        return model.eval()  # type: ignore[no-untyped-call]


def architecture(folder: Path) -> str:
    """The folder's architecture, refused unless the builder supports it."""
    config = folder / "config.json"
    try:
        declared = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except FileNotFoundError as exc:
        raise SourceModelError(
            f"source.huggingface: expected a model folder with config.json at {folder}"
        ) from exc
    except (OSError, ValueError) as exc:
        raise SourceModelError(f"{config}: expected JSON, could not read it: {exc}") from exc
    supported = [a for a in declared if a in GENERATIVE_ARCHITECTURES]
    if not supported:
        raise SourceModelError(
            f"source.huggingface: architecture {declared or 'none'} is not one the "
            f"onnxruntime-genai builder converts; expected one of "
            f"{', '.join(GENERATIVE_ARCHITECTURES)}"
        )
    return str(supported[0])


def load_lm_source(recipe: LmRecipe) -> LmSource:
    if recipe.source.huggingface is None:
        raise SourceModelError("source.huggingface: missing key")
    folder = recipe.resolve(recipe.source.huggingface)
    arch = architecture(folder)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise SourceModelError(f"source.huggingface: cannot load the tokenizer: {exc}") from exc
    return LmSource(folder, arch, tokenizer)


__all__ = ["LmSource", "architecture", "load_lm_source"]
