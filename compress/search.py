"""Search over variants: quantize each float candidate every way the recipe allows,
evaluate all on the target provider, fall back on sensitive layers when a variant breaks
the budget, and select the fastest variant within it.

Float candidates (the uncompressed export, the distilled and pruned models) come in
from the pipeline; every variant made here appears in the report, selected or not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from compress.evaluate import Evaluator, Metrics, budget_violations
from compress.passes.fp16 import Fp16Config, to_fp16
from compress.passes.quantize import (
    QuantizeConfig,
    blockwise_capable,
    preprocess,
    quantize_model,
)
from compress.recipe import Budget, Recipe
from compress.sensitivity import BlockSensitivity, analyse, fallback_exclusions

log = logging.getLogger(__name__)
Calibration = Sequence[Mapping[str, np.ndarray]]
Step = Callable[[str], None]


@dataclass
class Variant:
    name: str
    path: Path
    stage: str  # "baseline", "distilled", "pruned", ... plus the ONNX pass applied
    metrics: Metrics
    violations: list[str] = field(default_factory=list)
    note: str = ""
    #: Integer weights: golden outputs then get a tolerance for kernels that round
    #: differently per instruction set and provider.
    quantized: bool = False

    @property
    def in_budget(self) -> bool:
        return not self.violations


@dataclass
class SearchResult:
    baseline: Variant
    variants: list[Variant]
    selected: Variant | None
    sensitivity: dict[str, list[BlockSensitivity]] = field(default_factory=dict)


def quantize_configs(recipe: Recipe) -> list[QuantizeConfig]:
    step = recipe.steps.quantize
    if step is None:
        return []
    configs = []
    for per_channel in step.per_channel:
        if "dynamic" in step.modes:
            configs.append(QuantizeConfig(mode="dynamic", per_channel=per_channel))
        if "static" in step.modes:
            configs.extend(
                QuantizeConfig(
                    mode="static", per_channel=per_channel, calibration=method, format=step.format
                )
                for method in step.calibration
            )
    return configs


def select(variants: Sequence[Variant]) -> Variant | None:
    """The fastest variant within budget: highest throughput, then lowest latency."""
    ok = [v for v in variants if v.in_budget]
    return max(ok, key=lambda v: (v.metrics.throughput, -v.metrics.latency_ms), default=None)


def baseline_variant(evaluator: Evaluator, path: Path, budget: Budget) -> Variant:
    """The uncompressed model, the reference every budget is measured against; only an
    absolute minimum can rule it out."""
    metrics = evaluator.evaluate(path)
    return Variant(
        "baseline-fp32", path, "baseline", metrics, budget_violations(metrics, metrics, budget)
    )


class Search:
    """Holds the evaluator, the evaluated baseline and the work folder while variants
    are made and scored."""

    def __init__(
        self,
        recipe: Recipe,
        evaluator: Evaluator,
        workdir: Path,
        calibration: Calibration,
        *,
        baseline: Variant,
        step: Step | None = None,
    ):
        self.recipe, self.evaluator, self.workdir = recipe, evaluator, workdir
        self.calibration = calibration
        self.baseline = baseline
        self.step = step or (lambda _msg: None)
        self.sensitivity: dict[str, list[BlockSensitivity]] = {}

    def add(
        self, name: str, path: Path, stage: str, note: str = "", *, quantized: bool = False
    ) -> Variant:
        self.step(f"evaluating {name}")
        metrics = self.evaluator.evaluate(path)
        violations = budget_violations(metrics, self.baseline.metrics, self.recipe.budget)
        return Variant(name, path, stage, metrics, violations, note, quantized)

    def run(self, candidates: Sequence[tuple[str, Path]]) -> SearchResult:
        """``candidates``: (stage, float ONNX path); the baseline's path is not evaluated
        again."""
        variants: list[Variant] = []
        for stage, path in candidates:
            if path == self.baseline.path:
                parent = self.baseline
            else:
                parent = self.add(f"{stage}-fp32", path, stage)
            variants.append(parent)
            variants.extend(self._quantized(stage, path, parent.in_budget))
            if self.recipe.target.provider == "cuda" or self.recipe.steps.fp16:
                fp16 = to_fp16(path, self.workdir / f"{stage}-fp16.onnx", Fp16Config())
                variants.append(self.add(f"{stage}-fp16", fp16, stage))
        return SearchResult(self.baseline, variants, select(variants), self.sensitivity)

    def _quantized(self, stage: str, float_path: Path, parent_ok: bool) -> list[Variant]:
        """Quantized variants of one float candidate; the fallback runs only when the
        float model itself is within budget (keeping layers in float cannot beat it)."""
        configs = quantize_configs(self.recipe)
        if not configs:
            return []
        self.step(f"pre-processing {stage} for quantization")
        prepared = preprocess(float_path, self.workdir / f"{stage}-pre.onnx")
        out = []
        for config in configs:
            name = f"{stage}-{config.label}"
            path = quantize_model(
                prepared, self.workdir / f"{name}.onnx", config, self.calibration, prepare=False
            )
            variant = self.add(name, path, stage, quantized=True)
            out.append(variant)
            if parent_ok and not variant.in_budget:
                out.extend(self._fallback(stage, prepared, config))
        return out

    def _fallback(self, stage: str, prepared: Path, config: QuantizeConfig) -> list[Variant]:
        step = self.recipe.steps.quantize
        if step is None or step.fallback_max_layers == 0:
            return []
        limit = step.fallback_max_layers
        key = f"{stage}-{config.label}"
        self.step(f"sensitivity analysis of {key}")
        ranked = analyse(
            prepared,
            config,
            self.evaluator.metric_only,
            self.workdir,
            calibration=self.calibration,
            on_block=lambda b: self.step(f"sensitivity: {b}"),
            granularity=step.sensitivity,
        )
        self.sensitivity[key] = ranked
        out = []
        capable = set(
            blockwise_capable(prepared, fallback_exclusions(ranked, len(ranked)))
            if step.fallback == "blockwise"
            else ()
        )  # read the model once, not once per k
        for k in range(1, min(limit, len(ranked)) + 1):
            spared = fallback_exclusions(ranked, k)
            in_blocks = tuple(n for n in spared if n in capable)
            fallback = replace(
                config,
                exclude=tuple(n for n in spared if n not in in_blocks),
                blockwise=in_blocks,
                block_size=step.fallback_block_size,
            )
            path = quantize_model(
                prepared,
                self.workdir / f"{key}-fb{k}.onnx",
                fallback,
                self.calibration,
                prepare=False,
            )
            blocks = ", ".join(item.block for item in ranked[:k])
            how = "blocks" if in_blocks else "float"
            note = f"kept in {'8-bit blocks' if in_blocks else 'float'}: {blocks}"
            variant = self.add(f"{key}+{how}{k}", path, stage, note=note, quantized=True)
            out.append(variant)
            if variant.in_budget:
                break
        return out


__all__ = [
    "Search",
    "SearchResult",
    "Variant",
    "baseline_variant",
    "quantize_configs",
    "select",
]
