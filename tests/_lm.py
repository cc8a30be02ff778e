"""Tiny generative models for tests: a Llama trained by ``compress.lm`` for a few steps on
the synthetic clinical corpus, built to int4 by onnxruntime-genai's builder, cached.

The cache lives under ``$APPLIANCE_TEST_CACHE`` (default ``~/.cache/appliance-tests``),
keyed by the spec, so a clean machine builds each model once (about 10 s) and later runs
reuse it. A build lands by an atomic rename, so two test runs never see half a folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from compress.lm import GenaiBuild, LlamaSpec, build_genai, build_llama

TINY = LlamaSpec(steps=60)
INT4_CPU = GenaiBuild()


def cache_root() -> Path:
    default = Path.home() / ".cache" / "appliance-tests"
    root = Path(os.environ.get("APPLIANCE_TEST_CACHE", default))
    root.mkdir(parents=True, exist_ok=True)
    return root


def hf_llama(spec: LlamaSpec = TINY) -> Path:
    """The Hugging Face folder of ``spec`` (tokenizer, config, safetensors)."""
    return _cached(f"llama-{spec.key()}-hf", lambda out: build_llama(spec, out))


def genai_model(spec: LlamaSpec = TINY, build: GenaiBuild = INT4_CPU) -> Path:
    """The onnxruntime-genai folder of ``spec`` built with ``build`` (int4 CPU default)."""
    name = f"llama-{spec.key()}-{build.precision}-{build.provider}"
    if build.extra:
        name += "-" + "-".join(f"{k}{v}" for k, v in sorted(build.extra.items()))
    hf = hf_llama(spec)
    return _cached(name, lambda out: build_genai(hf, out, build))


def copy_model(source: Path, target: Path) -> Path:
    """A copy a test may change (the cache is shared)."""
    shutil.copytree(source, target)
    return target


def _cached(name: str, make) -> Path:  # type: ignore[no-untyped-def]
    final = cache_root() / name
    if final.is_dir():
        return final
    with tempfile.TemporaryDirectory(dir=cache_root()) as scratch:
        built = make(Path(scratch) / "out")
        try:
            os.rename(built, final)
        except OSError:
            if not final.is_dir():
                raise
    return final
