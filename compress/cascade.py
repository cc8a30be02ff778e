"""Calibrating a cascade's threshold on evaluation data (``appliance compress --cascade``).

Given the class probabilities of a small and a large model on the same labelled rows,
every threshold t makes a cascade: the small model's class where its top probability is
at least t, the large model's elsewhere (the daemon's ``[cascades.NAME]`` rule,
``min_confidence``). The threshold curve lists, per t, the share of rows the small model
answers, the cascade's accuracy and its agreement with the large model. The chosen
threshold is the lowest (the most rows to the small model) at which the cascade stays
within ``max_drop`` of the large model alone in both senses: its accuracy is at most
``max_drop`` lower, and it gives another class than the large model on at most
``max_drop`` of the rows. The second bounds the accuracy lost on any labelling of these
rows, so a small evaluation set's luck (the small model right where the large one is
wrong) cannot buy rows for the small model. Rows
are routed one by one here, as the daemon does for single-row requests (it routes a
request of several rows as a whole).

The probability output is found as the daemon finds it: ``probabilities``, else the only
float output shaped (rows, classes). Pure NumPy apart from running the two models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compress.errors import CompressError, DataError

#: Thresholds the curve shows besides the chosen one.
CURVE = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)


@dataclass(frozen=True)
class CurvePoint:
    threshold: float
    small_share: float  # rows answered by the small model
    accuracy: float  # of the cascade against the labels
    agreement: float  # rows on which the cascade's class is the large model's


@dataclass(frozen=True)
class Calibration:
    large_accuracy: float
    small_accuracy: float
    max_drop: float
    chosen: CurvePoint | None  # None: no threshold keeps the budget
    curve: tuple[CurvePoint, ...]

    def markdown(self) -> str:
        lines = [
            f"large model alone: accuracy {self.large_accuracy:.4f}; small model alone: "
            f"{self.small_accuracy:.4f}; budget: at most {self.max_drop:.4f} below the large",
            "",
            "| min_confidence | answered by small | cascade accuracy | agrees with large |",
            "|---|---|---|---|",
        ]
        for p in self.curve:
            mark = " (chosen)" if p == self.chosen else ""
            lines.append(
                f"| {p.threshold:.4f}{mark} | {p.small_share:.1%} | {p.accuracy:.4f} | "
                f"{p.agreement:.1%} |"
            )
        return "\n".join(lines)


def calibrate(
    small: np.ndarray, large: np.ndarray, labels: np.ndarray, max_drop: float = 0.01
) -> Calibration:
    """``small``, ``large``: (rows, classes) probabilities; ``labels``: (rows,) classes."""
    _check(small, large, labels)
    confidence = small.max(axis=1)
    small_class, large_class = small.argmax(axis=1), large.argmax(axis=1)
    floor = float((large_class == labels).mean()) - max_drop
    # Every distinct confidence is a threshold where the cascade changes: the exact optimum.
    candidates = np.unique(confidence)
    chosen = None
    for t in candidates:  # ascending: the first that holds sends the most rows to small
        point = _point(float(t), confidence, small_class, large_class, labels)
        if point.accuracy >= floor - 1e-12 and point.agreement >= 1 - max_drop - 1e-12:
            chosen = point
            break
    curve = [_point(t, confidence, small_class, large_class, labels) for t in CURVE]
    if chosen is not None:
        curve = sorted({*curve, chosen}, key=lambda p: p.threshold)
    return Calibration(
        large_accuracy=float((large_class == labels).mean()),
        small_accuracy=float((small_class == labels).mean()),
        max_drop=max_drop,
        chosen=chosen,
        curve=tuple(curve),
    )


def _point(
    t: float, confidence: np.ndarray, small: np.ndarray, large: np.ndarray, labels: np.ndarray
) -> CurvePoint:
    by_small = confidence >= t
    answer = np.where(by_small, small, large)
    return CurvePoint(
        threshold=t,
        small_share=float(by_small.mean()),
        accuracy=float((answer == labels).mean()),
        agreement=float((answer == large).mean()),
    )


def _check(small: np.ndarray, large: np.ndarray, labels: np.ndarray) -> None:
    if small.ndim != 2 or small.shape != large.shape or len(labels) != len(small):
        raise DataError(
            f"expected (rows, classes) probabilities of both models and one label per row, got "
            f"{small.shape}, {large.shape} and {len(labels)} labels"
        )
    for name, p in (("small", small), ("large", large)):
        if not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
            raise DataError(
                f"the {name} model's output is not probabilities (rows do not sum to 1); a "
                "cascade's threshold is a top-class probability"
            )


def probabilities(model: Path, x: np.ndarray) -> np.ndarray:
    """(rows, classes) class probabilities of an ONNX classifier on tabular rows."""
    from appliance.runtime.factory import open_session

    session = open_session(model, CompressError)
    name = _probability_output([(o.name, o.type, o.shape) for o in session.get_outputs()], model)
    (feed,) = session.get_inputs()
    return np.asarray(session.run([name], {feed.name: x.astype(np.float32)})[0])


def _probability_output(outputs: Sequence[tuple[str, str, Sequence[object]]], model: Path) -> str:
    names = [name for name, _, _ in outputs]
    if "probabilities" in names:
        return "probabilities"
    scores = [n for n, kind, shape in outputs if kind == "tensor(float)" and len(shape) == 2]
    if len(scores) != 1:
        raise DataError(
            f"{model}: expected an output 'probabilities' or one float (rows, classes) output, "
            f"got {names}"
        )
    return scores[0]


def calibrate_models(
    small: Path, large: Path, data: Path, *, label: str = "label", max_drop: float = 0.01
) -> Calibration:
    """Both models on a labelled table (CSV/Parquet: feature columns and ``label``)."""
    from compress.data import load_dataset
    from compress.recipe import DataSpec

    dataset = load_dataset(DataSpec(path=data, label=label))
    if dataset.y is None or not isinstance(dataset.x, np.ndarray):
        raise DataError(f"{data}: expected a table with feature columns and a {label!r} column")
    return calibrate(
        probabilities(small, dataset.x), probabilities(large, dataset.x), dataset.y, max_drop
    )


__all__ = ["CURVE", "Calibration", "CurvePoint", "calibrate", "calibrate_models", "probabilities"]
