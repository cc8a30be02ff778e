"""Site evaluation of a classifier: reading the box's labelled data, running it, scoring it.

Owns the evaluation data format and the metrics. ``[models.NAME] eval_data`` names a
CSV or Parquet file kept on the box: one column per feature (in the model's input
order), a ``label`` column holding the true class as the package's labels spell it, and
an optional ``group`` column (a ward, a scanner, an age band) scored on its own too.
The rows are fed to the model's single 2-D input, ``(batch, features)``.

The metrics are written with numpy (scikit-learn is not a dependency of the serving
box), following scikit-learn's definitions:

- ``accuracy``: share of rows whose top class is the label;
- ``f1``: macro F1, the unweighted mean over the classes present in the labels of
  ``2 * precision * recall / (precision + recall)`` (0 where both are 0);
- ``auroc``: for two classes the area under the ROC curve of the second class's score
  (the Mann-Whitney U statistic, ties counted half); for more, the unweighted mean of
  one-vs-rest areas over the classes present (scikit-learn's ``ovr``, ``macro``).

The data never leaves this module's callers and never enters a log: errors name the
file, the column and what was expected, never a value of a row. Running the model is
the caller's (``appliance.quality.runner``); this module is pure computation.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from appliance.errors import ConfigError

Array = np.ndarray[Any, Any]
Metric = Callable[[Array, Array, int], float]

LABEL = "label"
GROUP = "group"
#: Rows per session run: large enough to amortise the call, small enough that one run
#: holds the evaluation thread only briefly.
BATCH_ROWS = 256


@dataclass(frozen=True)
class EvalData:
    """Labelled rows: ``features`` (rows, features) FP32, ``labels`` class indices (rows,),
    ``groups`` one name per row ("" when the file has no group column)."""

    features: Array
    labels: Array
    groups: tuple[str, ...]

    @property
    def rows(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Scores:
    """A metric over all rows and per group: ``groups`` maps a group to (rows, score)."""

    metric: str
    overall: float
    rows: int
    groups: Mapping[str, tuple[int, float]]


def read_eval_data(path: Path, labels: Sequence[str]) -> EvalData:
    """Read ``path`` (``.csv`` or ``.parquet``) against the package's class ``labels``."""
    columns = _read_columns(path)
    for required in (LABEL,):
        if required not in columns:
            raise ConfigError(
                f"eval_data {path}: expected a {required!r} column, found columns "
                f"{sorted(columns)[:20]}"
            )
    names = [c for c in columns if c not in (LABEL, GROUP)]
    if not names:
        raise ConfigError(f"eval_data {path}: expected feature columns besides label and group")
    try:
        features = np.stack([np.asarray(columns[c], dtype=np.float32) for c in names], axis=1)
    except ValueError:
        raise ConfigError(
            f"eval_data {path}: every feature column must hold numbers; columns {names[:20]}"
        ) from None
    index = {label: i for i, label in enumerate(labels)}
    raw_labels = [str(v) for v in columns[LABEL]]
    unknown = sorted({v for v in raw_labels if v not in index})
    if unknown:
        raise ConfigError(
            f"eval_data {path}: {len(unknown)} label value(s) are not among the package's "
            f"labels {list(labels)}"
        )
    groups = tuple(str(v) for v in columns[GROUP]) if GROUP in columns else ("",) * len(raw_labels)
    return EvalData(
        features=features,
        labels=np.asarray([index[v] for v in raw_labels], dtype=np.int64),
        groups=groups,
    )


def _read_columns(path: Path) -> dict[str, list[Any]]:
    if not path.is_file():
        raise ConfigError(f"eval_data {path}: no such file")
    if path.suffix.lower() == ".parquet":
        return _read_parquet(path)
    if path.suffix.lower() != ".csv":
        raise ConfigError(f"eval_data {path}: expected a .csv or .parquet file")
    try:
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            header = list(reader.fieldnames or [])
            columns: dict[str, list[Any]] = {name: [] for name in header}
            for row in reader:
                for name in header:
                    columns[name].append(row[name])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"eval_data {path}: could not be read ({type(exc).__name__})") from None
    if not header or not columns[header[0]]:
        raise ConfigError(f"eval_data {path}: expected a header line and at least one row")
    return columns


def _read_parquet(path: Path) -> dict[str, list[Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            f"eval_data {path}: reading Parquet needs pyarrow, which this box does not "
            "have; install it or give the data as CSV"
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow's errors are many and untyped for us
        raise ConfigError(f"eval_data {path}: could not be read ({type(exc).__name__})") from None
    return {name: table.column(name).to_pylist() for name in table.column_names}


# -- metrics ----------------------------------------------------------------------


def accuracy(labels: Array, scores: Array, classes: int) -> float:
    """Share of rows whose top-scoring class is the label. scores: (rows, classes)."""
    return float(np.mean(np.argmax(scores, axis=1) == labels))


def macro_f1(labels: Array, scores: Array, classes: int) -> float:
    """Unweighted mean F1 over the classes present in ``labels`` or in the predictions."""
    predicted = np.argmax(scores, axis=1)
    present = np.union1d(np.unique(labels), np.unique(predicted))
    values = []
    for cls in present:
        tp = float(np.sum((predicted == cls) & (labels == cls)))
        fp = float(np.sum((predicted == cls) & (labels != cls)))
        fn = float(np.sum((predicted != cls) & (labels == cls)))
        values.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(values))


def _binary_auc(positive: Array, score: Array) -> float | None:
    """Mann-Whitney AUC of ``score`` for ``positive`` rows; None when one side is empty."""
    n_pos = int(positive.sum())
    n_neg = int(positive.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(score.size, dtype=np.float64)
    ranks[order] = np.arange(1, score.size + 1)
    # Tied scores share their mean rank (counted half, as the U statistic does).
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    u = float(ranks[positive].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def auroc(labels: Array, scores: Array, classes: int) -> float:
    """Binary: AUC of the second class's score; more classes: macro one-vs-rest AUC."""
    columns = [1] if scores.shape[1] == 2 else range(scores.shape[1])
    areas = [_binary_auc(labels == c, scores[:, c].astype(np.float64)) for c in columns]
    known = [a for a in areas if a is not None]
    # One class only (a small group): no ranking to judge; NaN shows as "n/a".
    return float(np.mean(known)) if known else float("nan")


METRICS: Mapping[str, Metric] = {"accuracy": accuracy, "f1": macro_f1, "auroc": auroc}


def score(metric: str, data: EvalData, outputs: Array) -> Scores:
    """``metric`` over all rows and per group, from the model's (rows, classes) outputs."""
    function = METRICS[metric]
    classes = outputs.shape[1]
    groups: dict[str, tuple[int, float]] = {}
    names = np.asarray(data.groups)
    for group in sorted(set(data.groups) - {""}):
        mask = names == group
        groups[group] = (int(mask.sum()), function(data.labels[mask], outputs[mask], classes))
    return Scores(
        metric=metric,
        overall=function(data.labels, outputs, classes),
        rows=data.rows,
        groups=groups,
    )


__all__ = [
    "BATCH_ROWS",
    "GROUP",
    "LABEL",
    "METRICS",
    "EvalData",
    "Scores",
    "accuracy",
    "auroc",
    "macro_f1",
    "read_eval_data",
    "score",
]
