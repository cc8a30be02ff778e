"""Per-layer (or per-block) sensitivity of the task metric to int8 quantization.

Each block is quantized alone, everything else kept in float, and the metric's drop
from the float model is its sensitivity. Blocks are transformer layers for encoder
graphs (``/encoder/layer.N/...``) and single weight nodes otherwise. The fallback keeps
the most sensitive blocks in float, one more at a time, until the budget holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from compress.passes.quantize import QuantizeConfig, quantizable_nodes, quantize_model

_LAYER = re.compile(r"^(.*?/layer\.\d+)/")
#: "block": a transformer layer at a time (few probes); "node": each weight node (finer
#: fallback, so fewer operations stay in float, at one probe per node).
Granularity = Literal["block", "node"]


@dataclass(frozen=True)
class BlockSensitivity:
    block: str
    nodes: tuple[str, ...]
    drop: float  # metric(float) - metric(only this block quantized); larger = more sensitive


def block_of(node: str) -> str:
    match = _LAYER.match(node)
    return match.group(1) if match else node


def blocks(path: Path, granularity: Granularity = "block") -> dict[str, tuple[str, ...]]:
    """Quantizable nodes of ``path`` grouped by block (or one per node), in graph order."""
    grouped: dict[str, list[str]] = {}
    for node in quantizable_nodes(path):
        grouped.setdefault(block_of(node) if granularity == "block" else node, []).append(node)
    return {k: tuple(v) for k, v in grouped.items()}


def analyse(
    float_path: Path,
    config: QuantizeConfig,
    score: Callable[[Path], float],
    workdir: Path,
    *,
    calibration: Sequence[Mapping[str, np.ndarray]] | None = None,
    on_block: Callable[[str], None] | None = None,
    granularity: Granularity = "block",
) -> list[BlockSensitivity]:
    """Sensitivities of every block of ``float_path`` (already pre-processed) under
    ``config``, most sensitive first."""
    reference = score(float_path)
    results = []
    for index, (block, nodes) in enumerate(blocks(float_path, granularity).items()):
        probe = workdir / f"sens-{index}.onnx"
        single = QuantizeConfig(
            mode=config.mode,
            per_channel=config.per_channel,
            calibration=config.calibration,
            format=config.format,
            only=nodes,
        )
        quantize_model(float_path, probe, single, calibration, prepare=False)
        results.append(BlockSensitivity(block, nodes, reference - score(probe)))
        probe.unlink()
        if on_block is not None:
            on_block(block)
    return sorted(results, key=lambda r: r.drop, reverse=True)


def fallback_exclusions(ranked: Sequence[BlockSensitivity], k: int) -> tuple[str, ...]:
    """Node names of the ``k`` most sensitive blocks, to keep in float."""
    return tuple(node for item in ranked[:k] for node in item.nodes)


__all__ = [
    "BlockSensitivity",
    "Granularity",
    "analyse",
    "block_of",
    "blocks",
    "fallback_exclusions",
]
