"""Weight-only quantization of a causal LM (MatMulNBits), two ways.

- ``builder_options``: int4/int8 RTN or k-quant straight from onnxruntime-genai's builder
  (``--extra_options algo_config=... block_size=... accuracy_level=...
  nodes_to_exclude=/lm_head/MatMul``).
- ``quantize_folder``: ONNX Runtime's ``MatMulNBitsQuantizer`` on the builder's fp32
  folder, for GPTQ (with calibration text), HQQ, and mixed precision: the int4 body with
  chosen decoder layers spared at 8 bit (the sensitivity fallback).
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from compress.errors import QuantizeError
from compress.lm.builder import GenaiBuild

LM_HEAD = "/lm_head/MatMul"
_LAYER = re.compile(r"^/model/layers\.(\d+)/")
Algorithm = Literal["rtn", "k_quant", "gptq", "hqq"]
#: Algorithms the builder runs itself; the others go through ``quantize_folder``.
BUILDER_ALGORITHMS = ("rtn", "k_quant")


@dataclass(frozen=True)
class WeightOnlyConfig:
    bits: Literal[4, 8] = 4
    algorithm: Algorithm = "rtn"
    block_size: int = 32
    accuracy_level: int = 4
    spare_lm_head: bool = False  # keep /lm_head/MatMul in float
    #: Decoder layers (indices) kept at 8 bit inside an int4 model.
    int8_layers: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        parts = [f"int{self.bits}", self.algorithm.replace("_", ""), f"b{self.block_size}"]
        if self.spare_lm_head:
            parts.append("headfp")
        return "-".join(parts)

    @property
    def through_builder(self) -> bool:
        return self.algorithm in BUILDER_ALGORITHMS and not self.int8_layers


def builder_options(config: WeightOnlyConfig, provider: str) -> GenaiBuild:
    extra = {
        "algo_config": config.algorithm,
        "block_size": str(config.block_size),
        "accuracy_level": str(config.accuracy_level),
    }
    if config.spare_lm_head:
        extra["nodes_to_exclude"] = LM_HEAD
    return GenaiBuild(precision=f"int{config.bits}", provider=provider, extra=extra)


def layer_of(node: str) -> int | None:
    match = _LAYER.match(node)
    return int(match.group(1)) if match else None


def weight_matmuls(model: Any) -> list[str]:
    """MatMul nodes with a constant weight (what MatMulNBits replaces), in graph order."""
    constants = {init.name for init in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in constants]


def quantize_folder(
    fp32_folder: Path,
    out: Path,
    config: WeightOnlyConfig,
    calibration: Sequence[dict[str, np.ndarray]] = (),
    *,
    only_layer: int | None = None,
) -> Path:
    """``out``: a copy of ``fp32_folder`` whose ``model.onnx`` is quantized by ``config``
    (``only_layer``: that decoder layer alone, everything else left in float, as the
    sensitivity analysis probes it)."""
    import onnx
    from onnxruntime.quantization import matmul_nbits_quantizer as mnq

    # The quantizer module configures INFO logging for itself at import: one line a node.
    logging.getLogger(mnq.__name__).setLevel(logging.WARNING)
    model = onnx.load(str(fp32_folder / "model.onnx"))
    matmuls = weight_matmuls(model)
    spared = [n for n in matmuls if layer_of(n) in config.int8_layers]
    head = [LM_HEAD] if config.spare_lm_head else []
    exclude = spared + head
    if only_layer is not None:
        spared, exclude = [], [n for n in matmuls if layer_of(n) != only_layer]
    try:
        model = _pass(model, config, exclude=exclude, calibration=calibration, mnq=mnq)
        if spared:
            eight = mnq.DefaultWeightOnlyQuantConfig(
                block_size=config.block_size,
                is_symmetric=True,
                accuracy_level=config.accuracy_level,
                bits=8,
            )
            quantizer = mnq.MatMulNBitsQuantizer(
                model,
                bits=8,
                block_size=config.block_size,
                is_symmetric=True,
                accuracy_level=config.accuracy_level,
                nodes_to_include=spared,
                nodes_to_exclude=head,
                algo_config=eight,
            )
            quantizer.process()
            model = quantizer.model.model
    except (RuntimeError, ValueError, AssertionError, KeyError) as exc:
        raise QuantizeError(f"weight-only quantization ({config.label}) failed: {exc}") from exc
    shutil.copytree(fp32_folder, out, ignore=shutil.ignore_patterns("model.onnx*"))
    onnx.save_model(
        model,
        str(out / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx.data",
        size_threshold=1024,
    )
    return out


def _pass(
    model: Any,
    config: WeightOnlyConfig,
    *,
    exclude: list[str],
    calibration: Sequence[dict[str, np.ndarray]],
    mnq: Any,
) -> Any:
    """The int4 (or int8) body: every weight MatMul but ``exclude``."""
    algo: Any
    if config.algorithm == "rtn":
        algo = mnq.RTNWeightOnlyQuantConfig()
    elif config.algorithm == "k_quant":
        algo = mnq.KQuantWeightOnlyQuantConfig()
    elif config.algorithm == "hqq":
        algo = mnq.HQQWeightOnlyQuantConfig(block_size=config.block_size, bits=config.bits)
    else:
        if not calibration:
            raise QuantizeError("gptq: expected calibration text (data.calibration or data.train)")
        algo = mnq.GPTQWeightOnlyQuantConfig(
            calibration_data_reader=_Reader(list(calibration)), block_size=config.block_size
        )
        if exclude:
            raise QuantizeError("gptq: spared layers are not supported by ONNX Runtime's GPTQ")
    quantizer = mnq.MatMulNBitsQuantizer(
        model,
        bits=config.bits,
        block_size=config.block_size,
        is_symmetric=True,
        accuracy_level=config.accuracy_level,
        nodes_to_exclude=exclude,
        algo_config=algo,
    )
    quantizer.process()
    return quantizer.model.model if hasattr(quantizer.model, "model") else quantizer.model


class _Reader:
    """ONNX Runtime's calibration reader protocol over prepared feeds (copyable)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.feeds = feeds
        self._it: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.feeds)

    def __deepcopy__(self, memo: dict[int, Any]) -> _Reader:
        return _Reader(self.feeds)


__all__ = [
    "BUILDER_ALGORITHMS",
    "LM_HEAD",
    "WeightOnlyConfig",
    "builder_options",
    "layer_of",
    "quantize_folder",
    "weight_matmuls",
]
