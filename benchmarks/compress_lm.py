"""The causal-LM benchmark's teacher: a ~20 M-parameter Llama trained by
``compress.lm.build_llama`` on the synthetic clinical corpus, cached under
``$APPLIANCE_BENCH_CACHE`` (default ``~/.cache/appliance-bench``).

``python -m benchmarks.compress_lm`` trains it (once) and prints its folder. The variant
comparison and ``benchmarks/results/compress-lm.md`` are not written yet.
"""

from __future__ import annotations

import os
from pathlib import Path

from compress.lm import LlamaSpec, build_llama

#: About 20 M parameters; ~10 min of training on 2 shared cores.
TEACHER = LlamaSpec(
    hidden=384,
    layers=8,
    heads=6,
    kv_heads=2,
    intermediate=1536,
    vocab=4096,
    context=256,
    steps=300,
    batch=8,
    seq=64,
    lr=2e-3,
    sentences=20000,
)


def cache_root() -> Path:
    default = Path.home() / ".cache" / "appliance-bench"
    root = Path(os.environ.get("APPLIANCE_BENCH_CACHE", default))
    root.mkdir(parents=True, exist_ok=True)
    return root


def teacher(spec: LlamaSpec = TEACHER) -> Path:
    final = cache_root() / f"llama-{spec.key()}-hf"
    if not final.is_dir():
        scratch = final.with_name(final.name + ".partial")
        build_llama(spec, scratch)
        scratch.rename(final)
    return final


if __name__ == "__main__":
    print(teacher())
