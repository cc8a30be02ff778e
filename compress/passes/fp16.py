"""Float16 conversion for GPU targets (CUDA/TensorRT execution providers).

Halves the size and uses tensor cores; on CPU it is usually slower than fp32, so the
search only proposes it for GPU targets. Inputs and outputs stay float32
(``keep_io_types``) so clients need not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from compress.errors import QuantizeError


@dataclass(frozen=True)
class Fp16Config:
    keep_io_types: bool = True


def to_fp16(in_path: Path, out_path: Path, config: Fp16Config) -> Path:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        model = onnx.load(str(in_path))
        converted = convert_float_to_float16(model, keep_io_types=config.keep_io_types)
        onnx.save(converted, str(out_path))
    except Exception as exc:  # the converter raises bare ValueErrors/KeyErrors
        raise QuantizeError(f"fp16 conversion of {in_path.name} failed: {exc}") from exc
    return out_path


__all__ = ["Fp16Config", "to_fp16"]
