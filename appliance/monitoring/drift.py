"""Drift: how far a model's live inputs and outputs have moved from its reference profile.

Owns the streaming statistics of one model version and the population stability index
(PSI) computed from them. The reference is the package's ``reference_profile``
(``appliance.package.golden.make_reference_profile`` documents its structure): quantile
bins per tabular feature, one set of bins over all values of any other tensor, and a
classifier's class distribution and top-class confidence. Live rows are counted into the
same bins, so memory is fixed by the profile, never by the traffic; counts halve every
``window_rows`` rows, so recent traffic weighs most.

PSI over bins i with reference share r_i and live share l_i (both floored at
``_FLOOR`` so an empty bin stays finite)::

    PSI = sum_i (l_i - r_i) * ln(l_i / r_i)

Only bin counts are kept: no tensor value is stored, logged or exported. It does not
export metrics itself (``appliance.monitoring.metrics`` reads ``psi()``).
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]
#: Floor on bin shares, so a bin empty on one side adds a large but finite term.
_FLOOR = 1e-4
#: Values of one non-tabular tensor counted per batch, at most (evenly strided).
_MAX_VALUES = 8192
#: Rows held (as references to batch arrays) before they are counted, at most a batch more.
_FLUSH_ROWS = 256


class DriftState(enum.Enum):
    UNMEASURED = ""  # no reference profile, or too few rows yet
    OK = "ok"
    WARN = "warn"
    ALERT = "alert"


@dataclass(frozen=True)
class DriftSettings:
    warn: float = 0.1
    alert: float = 0.2
    min_rows: int = 200
    window_rows: int = 5000


def psi(reference: Array, live: Array) -> float:
    """PSI between two share vectors over the same bins (live: raw counts are fine)."""
    total = float(live.sum())
    if total <= 0:
        return 0.0
    ref = np.maximum(reference, _FLOOR)
    cur = np.maximum(live / total, _FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


class _Bins:
    """Live counts over one tensor's reference bins: tabular (per column) or summary."""

    def __init__(self, edges: list[list[float]], fractions: list[list[float]]):
        width = max(len(e) for e in edges)
        # (features, width): padding edges are +inf, so no value ever passes them.
        self.edges = np.full((len(edges), width), np.inf)
        self.reference = np.zeros((len(edges), width + 1))
        for j, (e, f) in enumerate(zip(edges, fractions, strict=True)):
            self.edges[j, : len(e)] = e
            self.reference[j, : len(f)] = f
        self.counts = np.zeros_like(self.reference)

    def add_columns(self, rows: Array) -> None:
        """(batch, features): one bin index per value, ``x <= edge`` stays left."""
        values = rows.astype(np.float64, copy=False)
        index = (values[:, :, None] > self.edges[None, :, :]).sum(axis=2)  # (batch, features)
        finite = np.isfinite(values)
        width = self.counts.shape[1]
        flat = (index + np.arange(values.shape[1]) * width)[finite]
        self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)

    def add_values(self, values: Array) -> None:
        """Any shape: every value (strided down to ``_MAX_VALUES``) into the single row."""
        flat = values.reshape(-1)
        if flat.size > _MAX_VALUES:
            flat = flat[:: flat.size // _MAX_VALUES + 1]
        flat = flat.astype(np.float64, copy=False)
        flat = flat[np.isfinite(flat)]
        index = np.searchsorted(self.edges[0], flat, side="left")
        self.counts[0] += np.bincount(index, minlength=self.counts.shape[1])

    def psi(self) -> list[float]:
        """PSI per row (feature), in one vectorised pass."""
        totals = self.counts.sum(axis=1, keepdims=True)
        ref = np.maximum(self.reference, _FLOOR)
        cur = np.maximum(self.counts / np.maximum(totals, 1e-12), _FLOOR)
        scores = np.sum((cur - ref) * np.log(cur / ref), axis=1)
        return [float(v) if t > 0 else 0.0 for v, t in zip(scores, totals[:, 0], strict=True)]


def _stats_bins(stats: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    return list(stats["bin_edges"]), list(stats["bin_fractions"])


class _Tensor:
    """The drift statistics of one input or output tensor."""

    def __init__(self, name: str, bins: _Bins):
        self.name = name
        self.bins = bins

    def add(self, array: Array) -> None:
        self.bins.add_values(array)

    def add_many(self, arrays: list[Array]) -> None:
        """Several batches at once: stacked when their shapes allow, else one by one."""
        if len(arrays) > 1 and len({a.shape[1:] for a in arrays}) == 1:
            self.add(np.concatenate(arrays))
        else:
            for array in arrays:
                self.add(array)

    def halve(self) -> None:
        self.bins.counts *= 0.5

    def psi(self) -> dict[str, float]:
        return {self.name: self.bins.psi()[0]}


class _Tabular(_Tensor):
    """A (batch, features) tensor: one set of bins per feature column."""

    def add(self, array: Array) -> None:
        if array.ndim == 2 and array.shape[1] == self.bins.edges.shape[0]:
            self.bins.add_columns(array)

    def psi(self) -> dict[str, float]:
        return {f"{self.name}[{j}]": v for j, v in enumerate(self.bins.psi())}


class _Classifier(_Tensor):
    """A (batch, classes) output: predicted class distribution and top-class confidence."""

    def __init__(self, name: str, bins: _Bins, classes: Array):
        super().__init__(name, bins)
        self.classes = classes
        self.class_counts = np.zeros_like(classes)

    def add(self, array: Array) -> None:
        if array.ndim != 2 or array.shape[1] != self.classes.size:
            return
        probs = _probabilities(array)
        self.class_counts += np.bincount(probs.argmax(axis=1), minlength=self.classes.size)
        self.bins.add_values(probs.max(axis=1))

    def halve(self) -> None:
        super().halve()
        self.class_counts *= 0.5

    def psi(self) -> dict[str, float]:
        return {
            f"{self.name}.class": psi(self.classes, self.class_counts),
            f"{self.name}.confidence": self.bins.psi()[0],
        }


def _tensor(name: str, profile: Mapping[str, Any]) -> _Tensor:
    """The statistics a profile entry asks for (its ``kind``)."""
    kind = profile.get("kind")
    if kind == "tabular":
        pairs = [_stats_bins(f) for f in profile["features"]]
        return _Tabular(name, _Bins([p[0] for p in pairs], [p[1] for p in pairs]))
    if kind == "summary":
        edges, fractions = _stats_bins(profile)
        return _Tensor(name, _Bins([edges], [fractions]))
    if kind == "classifier":
        classes = np.asarray([float(v) for v in profile["class_distribution"].values()])
        edges, fractions = _stats_bins(profile["confidence"])
        return _Classifier(name, _Bins([edges], [fractions]), classes)
    raise ValueError(f"unknown profile kind {kind!r}")


def _probabilities(rows: Array) -> Array:
    """Softmax unless the rows already are probabilities (as the profile builder does)."""
    rows = rows.astype(np.float64, copy=False)
    if rows.min() >= 0 and np.abs(rows.sum(axis=1) - 1.0).max() <= 1e-3:
        return rows
    shifted = np.exp(rows - rows.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


class DriftMonitor:
    """Streaming drift statistics of one model version. Fed per batch from worker threads."""

    def __init__(
        self,
        model: str,
        version: int,
        profile: Mapping[str, Any] | None,
        settings: DriftSettings,
    ):
        self.model = model
        self.version = version
        self.settings = settings
        # Input and output names share one namespace in V2 requests and responses.
        self._tensors = {**_tensors(profile, "inputs"), **_tensors(profile, "outputs")}
        self._pending: list[tuple[Mapping[str, Array], int]] = []  # batches not counted yet
        self._pending_rows = 0
        self._rows = 0.0  # decayed like the counts
        self._rows_total = 0
        self._alerted = False
        self._lock = threading.Lock()

    @property
    def measured(self) -> bool:
        """Whether the package carried a profile this monitor could read."""
        return bool(self._tensors)

    @property
    def rows_total(self) -> int:
        return self._rows_total

    def observe(self, rows: int, inputs: Mapping[str, Array], outputs: Mapping[str, Array]) -> None:
        """Take one batch (``rows`` rows). Batches are counted ``_FLUSH_ROWS`` rows at a
        time, so the worker thread pays a list append per batch and a few vectorised
        passes per flush; the threshold is checked after each flush."""
        if not self.measured:
            return
        with self._lock:
            self._pending.append(({**inputs, **outputs}, rows))
            self._pending_rows += rows
            if self._pending_rows < _FLUSH_ROWS:
                return
            self._flush_locked()
            self._log_crossing(self._psi_locked())

    def psi(self) -> dict[str, float]:
        """PSI per feature or output statistic; empty until ``min_rows`` rows were seen."""
        with self._lock:
            self._flush_locked()
            return self._psi_locked()

    def _flush_locked(self) -> None:
        if not self._pending:
            return
        for name, tensor in self._tensors.items():
            arrays = [batch[name] for batch, _ in self._pending if name in batch]
            if arrays:
                tensor.add_many(arrays)
        rows = self._pending_rows
        self._pending.clear()
        self._pending_rows = 0
        self._rows += rows
        self._rows_total += rows
        if self._rows >= self.settings.window_rows:
            for tensor in self._tensors.values():
                tensor.halve()
            self._rows *= 0.5

    def _psi_locked(self) -> dict[str, float]:
        if self._rows_total < self.settings.min_rows:
            return {}
        scores: dict[str, float] = {}
        for tensor in self._tensors.values():
            scores.update(tensor.psi())
        return scores

    def state(self, scores: Mapping[str, float] | None = None) -> DriftState:
        scores = self.psi() if scores is None else scores
        if not scores:
            return DriftState.UNMEASURED
        worst = max(scores.values())
        if worst >= self.settings.alert:
            return DriftState.ALERT
        if worst >= self.settings.warn:
            return DriftState.WARN
        return DriftState.OK

    def _log_crossing(self, scores: Mapping[str, float]) -> None:
        """Log once when the alert threshold is crossed, once when back under warn.
        Called under the lock, so two worker threads cannot both log one crossing."""
        state = self.state(scores)
        if state is DriftState.ALERT and not self._alerted:
            self._alerted = True
            top = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)[:3]
            log.warning(
                "drift: model %s version %s, PSI %s at or above %.2f (over the last ~%d rows)",
                self.model,
                self.version,
                ", ".join(f"{k}={v:.2f}" for k, v in top),
                self.settings.alert,
                min(self._rows_total, self.settings.window_rows),
            )
        elif state is DriftState.OK and self._alerted:
            self._alerted = False
            log.info(
                "drift: model %s version %s back under PSI %.2f",
                self.model,
                self.version,
                self.settings.warn,
            )


def _tensors(profile: Mapping[str, Any] | None, side: str) -> dict[str, _Tensor]:
    """The readable tensors of one side of a profile; an unreadable one is skipped."""
    if not profile:
        return {}
    tensors: dict[str, _Tensor] = {}
    for name, entry in dict(profile.get(side) or {}).items():
        try:
            tensors[name] = _tensor(name, entry)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning(
                "drift: reference profile of %s %r unreadable, skipped: %s", side, name, exc
            )
    return tensors


__all__ = ["DriftMonitor", "DriftSettings", "DriftState", "psi"]
