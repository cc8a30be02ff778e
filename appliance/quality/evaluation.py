"""Site evaluation data and metrics: reading the box's labelled files, scoring answers.

Owns the evaluation data formats and the metrics. ``[models.NAME] eval_data`` names a
CSV or Parquet file kept on the box, with an optional ``group`` column (a ward, a
scanner, an age band) whose groups are scored on their own too:

- a classifier's: one column per feature (in the model's input order, fed to its single
  ``(batch, features)`` input) and a ``label`` column holding the true class as the
  package's labels spell it;
- an embedding model's: text pairs in ``text_a`` and ``text_b`` and their similarity in
  ``label`` (a number; higher: more alike), as STS benchmarks give them;
- a generative model's (``appliance.quality.generation``): ``prompt`` and ``reference``.

The metrics are written with numpy (scikit-learn is not a dependency of the serving
box), following scikit-learn's and sentence-transformers' definitions:

- ``accuracy``: share of rows whose top class is the label;
- ``f1``: macro F1, the unweighted mean over the classes present in the labels or the
  predictions of ``2 * precision * recall / (precision + recall)`` (0 where both are 0);
- ``auroc``: for two classes the area under the ROC curve of the second class's score
  (the Mann-Whitney U statistic, ties counted half); for more, the unweighted mean of
  one-vs-rest areas over the classes present (scikit-learn's ``ovr``, ``macro``);
- ``cosine`` and ``spearman`` (embeddings): Pearson and Spearman correlation between the
  cosine similarity of each pair's embeddings and its label (sentence-transformers'
  ``pearson_cosine`` and ``spearman_cosine``).

The data never leaves this module's callers and never enters a log: errors name the
file, the column and what was expected, never a value of a row. Running the model is
``appliance.quality.site``'s; this module is pure computation.
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
#: (truth, predicted) of some rows -> their score.
Metric = Callable[[Array, Array], float]

LABEL = "label"
GROUP = "group"
TEXT_A, TEXT_B = "text_a", "text_b"
#: Rows per session run. The run itself releases the GIL; between runs the evaluation
#: thread holds it for a moment, and at nice 19 on a loaded box it may be preempted
#: then, stalling the event loop: fewer, larger runs mean fewer such moments (1024 rows
#: against 256 lowered the p99 cost by about a third, benchmarks/results/eval-gate.md).
BATCH_ROWS = 1024


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
class PairData:
    """Text pairs and their similarity label (rows,), with a group name per row."""

    first: tuple[str, ...]
    second: tuple[str, ...]
    similarity: Array
    groups: tuple[str, ...]

    @property
    def rows(self) -> int:
        return len(self.first)


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
    _require(path, columns, (LABEL,))
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
    return EvalData(
        features=features,
        labels=np.asarray([index[v] for v in raw_labels], dtype=np.int64),
        groups=group_column(columns),
    )


def read_pair_data(path: Path) -> PairData:
    """Read an embedding model's ``text_a``, ``text_b``, ``label`` (similarity) file."""
    columns = _read_columns(path)
    _require(path, columns, (TEXT_A, TEXT_B, LABEL))
    try:
        similarity = np.asarray(columns[LABEL], dtype=np.float64)
    except ValueError:
        raise ConfigError(
            f"eval_data {path}: the {LABEL!r} column of text pairs must hold numbers "
            "(their similarity)"
        ) from None
    first, second = (tuple(str(v) for v in columns[c]) for c in (TEXT_A, TEXT_B))
    if not all(first) or not all(second):
        raise ConfigError(f"eval_data {path}: every {TEXT_A!r} and {TEXT_B!r} must be non-empty")
    return PairData(first, second, similarity, group_column(columns))


def read_columns(path: Path, required: Sequence[str]) -> dict[str, list[Any]]:
    """The file's columns by name, refused when one of ``required`` is missing."""
    columns = _read_columns(path)
    _require(path, columns, required)
    return columns


def group_column(columns: Mapping[str, Sequence[Any]]) -> tuple[str, ...]:
    """The ``group`` of each row ("" for every row when the file has none)."""
    if GROUP in columns:
        return tuple(str(v) for v in columns[GROUP])
    return ("",) * len(next(iter(columns.values())))


def _require(path: Path, columns: Mapping[str, Any], required: Sequence[str]) -> None:
    for name in required:
        if name not in columns:
            raise ConfigError(
                f"eval_data {path}: expected a {name!r} column, found columns "
                f"{sorted(columns)[:20]}"
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


def accuracy(labels: Array, scores: Array) -> float:
    """Share of rows whose top-scoring class is the label. scores: (rows, classes)."""
    return float(np.mean(np.argmax(scores, axis=1) == labels))


def macro_f1(labels: Array, scores: Array) -> float:
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


def _ranks(values: Array) -> Array:
    """1-based ranks; tied values share their mean rank (counted half in the U statistic)."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.arange(1, values.size + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.bincount(inverse, weights=ranks) / counts)[inverse]


def _binary_auc(positive: Array, score: Array) -> float | None:
    """Mann-Whitney AUC of ``score`` for ``positive`` rows; None when one side is empty."""
    n_pos = int(positive.sum())
    n_neg = int(positive.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _ranks(score)
    u = float(ranks[positive].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def auroc(labels: Array, scores: Array) -> float:
    """Binary: AUC of the second class's score; more classes: macro one-vs-rest AUC."""
    columns = [1] if scores.shape[1] == 2 else range(scores.shape[1])
    areas = [_binary_auc(labels == c, scores[:, c].astype(np.float64)) for c in columns]
    known = [a for a in areas if a is not None]
    # One class only (a small group): no ranking to judge; NaN shows as "n/a".
    return float(np.mean(known)) if known else float("nan")


def pearson(truth: Array, predicted: Array) -> float:
    """Pearson correlation; NaN when either side is constant (no ranking to judge)."""
    a, b = truth.astype(np.float64), predicted.astype(np.float64)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def spearman(truth: Array, predicted: Array) -> float:
    """Spearman correlation: Pearson's over the ranks (ties at their mean rank)."""
    return pearson(_ranks(truth.astype(np.float64)), _ranks(predicted.astype(np.float64)))


def cosine_similarity(a: Array, b: Array) -> Array:
    """Row-wise cosine similarity of two (rows, dim) arrays -> (rows,)."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.asarray(np.sum(a * b, axis=1) / np.maximum(norms, 1e-12), dtype=np.float64)


#: Metrics of a classifier: (class indices, (rows, classes) scores).
CLASSIFIER_METRICS: Mapping[str, Metric] = {
    "accuracy": accuracy,
    "f1": macro_f1,
    "auroc": auroc,
}
#: Metrics of an embedding model: (similarity labels, cosine similarity of the pairs).
EMBEDDING_METRICS: Mapping[str, Metric] = {"cosine": pearson, "spearman": spearman}


def score_rows(
    metric: str, function: Metric, truth: Array, predicted: Array, groups: Sequence[str]
) -> Scores:
    """``function`` over all rows and over each group's rows."""
    names = np.asarray(groups)
    scored: dict[str, tuple[int, float]] = {}
    for group in sorted(set(groups) - {""}):
        rows = np.flatnonzero(names == group)
        scored[group] = (int(rows.size), function(truth[rows], predicted[rows]))
    return Scores(
        metric=metric, overall=function(truth, predicted), rows=len(groups), groups=scored
    )


def score(metric: str, data: EvalData, outputs: Array) -> Scores:
    """A classifier's ``metric`` from its (rows, classes) outputs."""
    return score_rows(metric, CLASSIFIER_METRICS[metric], data.labels, outputs, data.groups)


__all__ = [
    "BATCH_ROWS",
    "CLASSIFIER_METRICS",
    "EMBEDDING_METRICS",
    "GROUP",
    "LABEL",
    "TEXT_A",
    "TEXT_B",
    "EvalData",
    "Metric",
    "PairData",
    "Scores",
    "accuracy",
    "auroc",
    "cosine_similarity",
    "group_column",
    "macro_f1",
    "pearson",
    "read_columns",
    "read_eval_data",
    "read_pair_data",
    "score",
    "score_rows",
    "spearman",
]
