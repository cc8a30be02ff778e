"""Evaluate one ONNX variant on the target provider: task metric, speed, size, memory.

- classification: accuracy, macro F1, AUROC (one-vs-rest macro for several classes);
- embedding: cosine fidelity to the reference (uncompressed) model's sentence embeddings;
- latency: best-of-N ms at batch 1; throughput: samples/s at batch ``throughput_batch``
  (text padded to ``seq_length``, the shape serving sees at worst);
- size: the model file plus external data; memory: growth of the process's resident
  set while loading the session and running one throughput batch (a proxy for the
  peak a serving process adds, measured in-process to keep evaluation cheap);
- per group (when the data names groups): the budget metric within each group.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import psutil

from appliance.runtime import open_session
from compress._inputs import InputAdapter, mean_pool
from compress.data import Dataset
from compress.errors import CompressError
from compress.recipe import Budget, Target

log = logging.getLogger(__name__)
_EVAL_BATCH = 64


@dataclass
class Metrics:
    metric: float  # the budget's metric
    scores: dict[str, float]
    groups: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0
    throughput: float = 0.0
    size_mb: float = 0.0
    memory_mb: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            **self.scores,
            "latency_ms_b1": self.latency_ms,
            "throughput_b32": self.throughput,
            "size_mb": self.size_mb,
            "memory_mb": self.memory_mb,
        }


def providers_for(target: Target) -> list[str]:
    """The ORT providers for the target; decided once, quietly (see PITFALLS on CUDA)."""
    if target.provider == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise CompressError(
                "target.provider is 'cuda' but this ONNX Runtime has no CUDA "
                "provider; evaluate on a GPU box or set provider: cpu"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def model_size_mb(path: Path) -> float:
    """The model file plus any external data files beside it that it references."""
    import onnx

    from appliance.package._onnx_specs import external_data_files

    total = path.stat().st_size
    for location in external_data_files(onnx.load(str(path), load_external_data=False)):
        total += (path.parent / location).stat().st_size
    return total / 1e6


def classification_scores(logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    predicted = logits.argmax(axis=1)
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    scores = {
        "accuracy": float(accuracy_score(y, predicted)),
        "f1": float(f1_score(y, predicted, average="macro")),
    }
    try:
        if probs.shape[1] == 2:
            scores["auroc"] = float(roc_auc_score(y, probs[:, 1]))
        else:
            scores["auroc"] = float(
                roc_auc_score(y, probs, multi_class="ovr", labels=list(range(probs.shape[1])))
            )
    except ValueError:  # a single class present in y: AUROC undefined
        scores["auroc"] = float("nan")
    return scores


class Evaluator:
    """Scores variants on one evaluation set; embeddings compare to ``reference``."""

    def __init__(
        self,
        data: Dataset,
        adapter: InputAdapter,
        task: str,
        target: Target,
        budget: Budget,
        *,
        reference: np.ndarray | None = None,
    ):
        if task == "classification" and data.y is None:
            raise CompressError("data.eval: expected labels for a classification task")
        self.data, self.adapter, self.task = data, adapter, task
        self.target, self.budget = target, budget
        self.providers = providers_for(target)
        #: (n, dim) sentence embeddings of the uncompressed model (task embedding).
        self.reference = reference

    def with_reference(self, path: Path) -> Evaluator:
        """The same evaluator, comparing embeddings to those of the model at ``path``."""
        reference = self.outputs(self.session(path))
        return Evaluator(
            self.data, self.adapter, self.task, self.target, self.budget, reference=reference
        )

    def session(self, path: Path) -> ort.InferenceSession:
        return open_session(
            path, CompressError, providers=self.providers, intra_op_threads=self.target.threads
        )

    def _feed(
        self, session: ort.InferenceSession, x: np.ndarray | list[str], pad_to_max: bool = False
    ) -> dict[str, np.ndarray]:
        names = {i.name for i in session.get_inputs()}
        return {k: v for k, v in self.adapter.arrays(x, pad_to_max).items() if k in names}

    def outputs(self, session: ort.InferenceSession) -> np.ndarray:
        """Logits (n, classes) or sentence embeddings (n, dim) for the whole set."""
        parts = []
        for start in range(0, len(self.data), _EVAL_BATCH):
            x = self.data.x[start : start + _EVAL_BATCH]
            feed = self._feed(session, x)
            out = session.run(None, feed)[0]
            if self.task == "embedding":
                out = mean_pool(out, feed["attention_mask"]) if out.ndim == 3 else out
            parts.append(np.asarray(out, dtype=np.float32))
        return np.concatenate(parts)

    def scores(self, outputs: np.ndarray, index: np.ndarray | None = None) -> dict[str, float]:
        sel = slice(None) if index is None else index
        if self.task == "embedding":
            if self.reference is None:
                return {"cosine": 1.0}
            ref = self.reference[sel]
            out = outputs[sel]
            cos = (ref * out).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1))
            return {"cosine": float(cos.mean()), "cosine_min": float(cos.min())}
        if self.data.y is None:
            raise CompressError("data.eval: expected labels for a classification task")
        return classification_scores(outputs[sel], self.data.y[sel])

    def group_scores(self, outputs: np.ndarray) -> dict[str, float]:
        if self.data.groups is None:
            return {}
        return {
            str(g): self.scores(outputs, np.flatnonzero(self.data.groups == g))[self.budget.metric]
            for g in sorted(set(self.data.groups.tolist()))
        }

    def _speed_inputs(self, n: int) -> np.ndarray | list[str]:
        reps = -(-n // len(self.data))
        if isinstance(self.data.x, list):
            return (self.data.x * reps)[:n]
        return np.concatenate([self.data.x] * reps)[:n]

    def _time(self, session: ort.InferenceSession, feed: dict[str, np.ndarray], runs: int) -> float:
        session.run(None, feed)  # warm-up: first run allocates
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - start)
        # The fastest run, not the median: other processes only ever add time, so on a
        # shared box the minimum is the stable estimate of what the model itself costs.
        return min(times)

    def speed(self, session: ort.InferenceSession) -> tuple[float, float]:
        """(latency ms at batch 1, samples/s at the throughput batch), best of N runs."""
        one = self._feed(session, self._speed_inputs(1), pad_to_max=True)
        batch = self.target.throughput_batch
        many = self._feed(session, self._speed_inputs(batch), pad_to_max=True)
        latency = self._time(session, one, self.target.latency_runs) * 1e3
        per_batch = self._time(session, many, max(3, self.target.latency_runs // 4))
        return latency, batch / per_batch

    def warm_up(self, path: Path) -> None:
        """Run once before measuring, so one-off allocations (thread pools, arenas,
        lazily imported modules) are not charged to the first variant's memory."""
        self.outputs(self.session(path))

    def evaluate(self, path: Path, timing: bool = True) -> Metrics:
        rss = psutil.Process().memory_info().rss
        session = self.session(path)
        outputs = self.outputs(session)
        scores = self.scores(outputs)
        metrics = Metrics(
            metric=scores[self.budget.metric],
            scores=scores,
            groups=self.group_scores(outputs),
            size_mb=model_size_mb(path),
        )
        if timing:
            metrics.latency_ms, metrics.throughput = self.speed(session)
        metrics.memory_mb = max(0.0, (psutil.Process().memory_info().rss - rss) / 1e6)
        return metrics

    def metric_only(self, path: Path) -> float:
        """The budget metric alone (sensitivity analysis: many cheap evaluations)."""
        return self.scores(self.outputs(self.session(path)))[self.budget.metric]


def budget_violations(metrics: Metrics, baseline: Metrics, budget: Budget) -> list[str]:
    """Why ``metrics`` breaks the budget (empty: within budget), overall and per group."""
    reasons = []
    checks = [("overall", metrics.metric, baseline.metric)]
    checks += [(f"group {g}", v, baseline.groups.get(g, v)) for g, v in metrics.groups.items()]
    for where, value, before in checks:
        if budget.max_drop is not None and value < before - budget.max_drop - 1e-12:
            reasons.append(
                f"{where}: {budget.metric} {value:.4f} is {before - value:.4f} below "
                f"{before:.4f} (max drop {budget.max_drop})"
            )
        if budget.min_value is not None and value < budget.min_value:
            reasons.append(f"{where}: {budget.metric} {value:.4f} < minimum {budget.min_value}")
    return reasons


__all__ = [
    "Evaluator",
    "Metrics",
    "budget_violations",
    "classification_scores",
    "model_size_mb",
    "providers_for",
]
