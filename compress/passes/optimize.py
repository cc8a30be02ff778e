"""ONNX Runtime graph optimisation, saved offline.

Level ``basic`` (constant folding, redundant node removal, semantics-preserving fusions)
is the level ONNX Runtime documents as safe to save and run on any execution provider;
``extended``/``all`` fuse into provider-specific contrib ops, which ORT redoes at load
time anyway. We therefore save at ``basic`` and let each box apply the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from appliance.runtime import open_session
from compress.errors import QuantizeError

_LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
}


@dataclass(frozen=True)
class OptimizeConfig:
    level: str = "basic"


def optimize_graph(in_path: Path, out_path: Path, config: OptimizeConfig) -> Path:
    """Write the ORT-optimised graph of ``in_path`` to ``out_path``."""
    if config.level not in _LEVELS:
        raise ValueError(f"level: expected one of {sorted(_LEVELS)}, got {config.level!r}")
    open_session(
        in_path, QuantizeError, optimization=_LEVELS[config.level], optimized_model_path=out_path
    )
    return out_path


__all__ = ["OptimizeConfig", "optimize_graph"]
