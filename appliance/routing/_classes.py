"""What a classifier's output looks like to routing: its probabilities and its rows.

One rule for cascades and shadows alike: the output named ``probabilities`` (what the
toolchain and sklearn-onnx write), else the only FP32 output shaped (batch, classes)
with at least two classes. A cascade may name another one
(``[cascades.NAME] probabilities``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from appliance.model import Array
from appliance.package.manifest import TensorSpec

PROBABILITIES = "probabilities"


def is_class_scores(spec: TensorSpec) -> bool:
    """FP32, (batch, classes) with two classes or more (or a dynamic class count)."""
    return (
        spec.datatype == "FP32"
        and len(spec.shape) == 2
        and (spec.shape[1] in (-1,) or spec.shape[1] >= 2)
    )


def probability_output(outputs: Sequence[TensorSpec], named: str | None = None) -> str | None:
    """The name of the class-probability output by the rule above; None if there is none."""
    by_name = {s.name: s for s in outputs}
    if named is not None:
        spec = by_name.get(named)
        return named if spec is not None and is_class_scores(spec) else None
    if PROBABILITIES in by_name and is_class_scores(by_name[PROBABILITIES]):
        return PROBABILITIES
    scores = [s.name for s in outputs if is_class_scores(s)]
    return scores[0] if len(scores) == 1 else None


def by_row(array: Array, batched: bool) -> Array:
    """(rows, values): one row per batch entry, or the whole output as one row."""
    if not batched or array.ndim == 0:
        return array.reshape(1, -1)
    return array.reshape(array.shape[0], -1)


def top_confidence(probabilities: Array) -> Array:
    """(batch,) the top-class probability of each row of a (batch, classes) output."""
    top: Array = np.asarray(probabilities, dtype=np.float64).max(axis=-1)
    return top.reshape(-1)


__all__ = ["PROBABILITIES", "by_row", "is_class_scores", "probability_output", "top_confidence"]
