"""Evaluate one built causal LM folder: quality with ONNX Runtime, speed with the Engine.

- perplexity: teacher-forced on held-out text packed into rows (``compress.lm.text``),
  the built ``model.onnx`` run by ONNX Runtime over whole rows with an empty KV cache;
- agreement: the fraction of positions whose greedy next token equals the reference's
  (the fp32 build of the teacher), on the same rows;
- per group (when the text names groups): the budget metric within each group;
- speed: onnxruntime-genai's ``Engine`` (continuous batching) at each concurrency:
  generated tokens/s over all requests and time to first token (median), best round;
- size: ``model.onnx`` plus its data; memory: resident-set growth while loading the
  model and serving one round at concurrency 1.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from compress.errors import CompressError
from compress.evaluate import Metrics, model_size_mb
from compress.recipe import LmBudget, LmTarget

_ROWS_PER_RUN = 4
OVERALL = ""


@dataclass(frozen=True)
class Rows:
    """Token rows to evaluate on, per group (``OVERALL`` alone when there are none)."""

    groups: Mapping[str, np.ndarray]  # (rows, length) int64

    @property
    def grouped(self) -> bool:
        return set(self.groups) != {OVERALL}


@dataclass(frozen=True)
class Quality:
    perplexity: float
    agreement: float
    groups: dict[str, tuple[float, float]]  # group -> (perplexity, agreement)
    predictions: dict[str, np.ndarray]  # group -> greedy next tokens (rows, length)


def _session(folder: Path, target: LmTarget):  # type: ignore[no-untyped-def]
    from appliance.runtime import open_session
    from compress.evaluate import providers_for

    return open_session(
        folder / "model.onnx",
        CompressError,
        providers=providers_for(target),  # type: ignore[arg-type]
        intra_op_threads=target.threads,
    )


def head_size(folder: Path) -> int:
    import json

    config = json.loads((folder / "genai_config.json").read_text(encoding="utf-8"))
    return int(config["model"]["decoder"]["head_size"])


def _feeds(session, ids: np.ndarray, head: int) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    feed: dict[str, np.ndarray] = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    for spec in session.get_inputs():
        if spec.name.startswith("past_key_values."):
            dtype = np.float16 if "float16" in spec.type else np.float32
            feed[spec.name] = np.zeros((ids.shape[0], spec.shape[1], 0, head), dtype=dtype)
        elif spec.name == "position_ids":
            feed[spec.name] = np.broadcast_to(np.arange(ids.shape[1]), ids.shape).copy()
    return feed


def feeds(folder: Path, target: LmTarget, ids: np.ndarray) -> dict[str, np.ndarray]:
    """The inputs of ``folder``'s model for whole rows ``ids`` with an empty KV cache."""
    return _feeds(_session(folder, target), ids, head_size(folder))


def quality(
    folder: Path, rows: Rows, target: LmTarget, reference: Mapping[str, np.ndarray] | None
) -> Quality:
    """Perplexity and agreement (1.0 without a reference: the model is the reference)."""
    session, head = _session(folder, target), head_size(folder)
    total_nll, total_n, total_same = 0.0, 0, 0
    groups: dict[str, tuple[float, float]] = {}
    predictions: dict[str, np.ndarray] = {}
    for group, ids in rows.groups.items():
        nll, same, preds = 0.0, 0, []
        for start in range(0, len(ids), _ROWS_PER_RUN):
            batch = ids[start : start + _ROWS_PER_RUN]
            logits = session.run(["logits"], _feeds(session, batch, head))[0].astype(np.float64)
            logits = logits[:, :-1]
            top = logits.max(axis=-1, keepdims=True)
            log_z = np.log(np.exp(logits - top).sum(axis=-1)) + top[..., 0]
            picked = np.take_along_axis(logits, batch[:, 1:, None], axis=-1)[..., 0]
            nll += float((log_z - picked).sum())
            preds.append(logits.argmax(axis=-1))
        predicted = np.concatenate(preds)
        if reference is not None:
            same = int((predicted == reference[group]).sum())
        n = predicted.size
        same = n if reference is None else same
        groups[group] = (float(np.exp(nll / n)), same / n)
        predictions[group] = predicted
        total_nll, total_n, total_same = total_nll + nll, total_n + n, total_same + same
    return Quality(
        float(np.exp(total_nll / total_n)),
        total_same / total_n,
        groups if rows.grouped else {},
        predictions,
    )


@dataclass(frozen=True)
class Speed:
    tokens_per_s: float
    ttft_ms: float


def generation_speed(
    folder: Path, prompts: Sequence[Sequence[int]], target: LmTarget, concurrency: int
) -> Speed:
    """Best of ``target.speed_rounds`` rounds of ``concurrency`` requests at once, each
    generating exactly ``target.new_tokens`` tokens."""
    import onnxruntime_genai as og  # type: ignore[import-untyped]

    model = og.Model(str(folder))
    engine = og.Engine(model)
    best: Speed | None = None
    for _ in range(target.speed_rounds):
        requests = []
        start = time.perf_counter()
        for i in range(concurrency):
            request = engine.create_request()
            options = og.TurnOptions(request)
            options.set_max_generated_tokens(target.new_tokens)
            options.set_min_generated_tokens(target.new_tokens)
            prompt = np.asarray(prompts[i % len(prompts)], dtype=np.int32)
            request.begin_turn(prompt, options)
            requests.append(request)
        first: dict[int, float] = {}
        tokens = 0
        buffer = engine.create_event_buffer(max(64, 4 * concurrency))
        while engine.has_pending_requests():
            for event in engine.run(buffer):
                tokens += 1
                index = requests.index(event.request)
                first.setdefault(index, time.perf_counter() - start)
        wall = time.perf_counter() - start
        speed = Speed(tokens / wall, statistics.median(first.values()) * 1e3)
        if best is None or speed.tokens_per_s > best.tokens_per_s:
            best = speed
    if best is None:
        raise CompressError("target.speed_rounds: expected at least one round")
    return best


@dataclass(frozen=True)
class LmEvaluator:
    """Scores built folders on fixed rows against a fixed reference (the fp32 build's
    greedy next tokens; ``None`` while evaluating the fp32 build itself)."""

    rows: Rows
    prompts: tuple[tuple[int, ...], ...]
    target: LmTarget
    budget: LmBudget
    reference: Mapping[str, np.ndarray] | None = None

    def with_reference(self, folder: Path) -> LmEvaluator:
        """The same evaluator, measuring agreement against ``folder``'s predictions."""
        predictions = quality(folder, self.rows, self.target, None).predictions
        return LmEvaluator(self.rows, self.prompts, self.target, self.budget, predictions)

    def metric_only(self, folder: Path) -> float:
        q = quality(folder, self.rows, self.target, self.reference)
        return q.perplexity if self.budget.metric == "perplexity" else q.agreement

    def evaluate(self, folder: Path, timing: bool = True) -> Metrics:
        rss = psutil.Process().memory_info().rss
        q = quality(folder, self.rows, self.target, self.reference)
        index = 0 if self.budget.metric == "perplexity" else 1
        scores = {"perplexity": q.perplexity, "agreement": q.agreement}
        metrics = Metrics(
            metric=scores[self.budget.metric],
            scores=scores,
            groups={g: values[index] for g, values in q.groups.items()},
            size_mb=lm_size_mb(folder),
        )
        if timing:
            for concurrency in self.target.concurrency:
                speed = generation_speed(folder, self.prompts, self.target, concurrency)
                scores[f"tokens_per_s_c{concurrency}"] = speed.tokens_per_s
                scores[f"ttft_ms_c{concurrency}"] = speed.ttft_ms
            first = self.target.concurrency[0]
            metrics.throughput = scores[f"tokens_per_s_c{first}"]
            metrics.latency_ms = scores[f"ttft_ms_c{first}"]
        metrics.memory_mb = max(0.0, (psutil.Process().memory_info().rss - rss) / 1e6)
        return metrics


def lm_size_mb(folder: Path) -> float:
    return model_size_mb(folder / "model.onnx")


def lm_budget_violations(metrics: Metrics, baseline: Metrics, budget: LmBudget) -> list[str]:
    """Why ``metrics`` breaks the budget (empty: within), overall and in every group."""
    reasons = []
    checks = [("overall", metrics.metric, baseline.metric)]
    checks += [(f"group {g}", v, baseline.groups.get(g, v)) for g, v in metrics.groups.items()]
    for where, value, before in checks:
        if budget.metric == "perplexity" and budget.max_increase is not None:
            limit = before * (1 + budget.max_increase)
            if value > limit + 1e-9:
                reasons.append(
                    f"{where}: perplexity {value:.3f} is {value / before - 1:+.1%} over "
                    f"{before:.3f} (max +{budget.max_increase:.0%})"
                )
        ceiling = budget.max_perplexity
        if budget.metric == "perplexity" and ceiling is not None and value > ceiling:
            reasons.append(f"{where}: perplexity {value:.3f} > maximum {ceiling}")
        if budget.metric == "agreement" and budget.max_drop is not None:
            floor = 1 - budget.max_drop
            if value < floor - 1e-12:
                reasons.append(
                    f"{where}: agreement {value:.4f} is below {floor:.4f} "
                    f"(max drop {budget.max_drop})"
                )
    return reasons


__all__ = [
    "LmEvaluator",
    "Quality",
    "Rows",
    "Speed",
    "feeds",
    "generation_speed",
    "lm_budget_violations",
    "lm_size_mb",
    "quality",
]
