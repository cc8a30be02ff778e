"""``appliance compress`` for ``task: text-generation``: a local Hugging Face causal LM
to a signed onnxruntime-genai package, within a perplexity (or agreement) budget.

Check the architecture -> load the text -> float candidates as Hugging Face folders
(the teacher; distilled: fewer layers, trained on the local text; pruned: FFN channels
and KV head groups removed, then recovered) -> each built to fp32 by onnxruntime-genai's
builder and evaluated (the teacher's fp32 build is the baseline and the reference for
agreement) -> weight-only variants of each (builder int4/int8 RTN and k-quant, ONNX
Runtime GPTQ/HQQ; block sizes; lm_head spared or not) -> when an int4 variant breaks the
budget, the per-layer sensitivity and the 8-bit fallback, one more layer at a time ->
fp16/bf16 builds for CUDA targets -> the fastest variant within budget -> report and
signed package. Written atomically into ``--out`` (``compress.pipeline``'s staging).
"""

from __future__ import annotations

import itertools
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from compress.errors import RecipeError
from compress.lm.builder import GenaiBuild, build_genai
from compress.lm.distill import LmDistillConfig, layer_student, train_on_teacher
from compress.lm.evaluate import OVERALL, LmEvaluator, Rows, feeds, lm_budget_violations
from compress.lm.prune import LmPruneConfig, prune_lm
from compress.lm.quantize import WeightOnlyConfig, builder_options, quantize_folder
from compress.lm.source import LmSource, load_lm_source
from compress.lm.text import Text, load_text, pack
from compress.recipe import LmRecipe, TextSpec
from compress.report import SpeedLabels, write_report
from compress.search import SearchResult, Variant, select
from compress.sensitivity import BlockSensitivity

log = logging.getLogger(__name__)
Step = Callable[[str], None]
_PROMPTS = 8
LM_SPEED = SpeedLabels(
    latency="TTFT c1 (ms)",
    throughput="tokens/s c1",
    throughput_phrase="the tokens/s at concurrency 1",
    latency_phrase="faster to the first token",
    plot_axis="time to first token at concurrency 1 (ms)",
)


@dataclass(frozen=True)
class _Texts:
    eval: Text
    train: Text | None
    calibration: Text


def _text(recipe: LmRecipe, spec: TextSpec | None) -> Text | None:
    return None if spec is None else load_text(spec, recipe.resolve(spec.path))


def _texts(recipe: LmRecipe) -> _Texts:
    evaluation = _text(recipe, recipe.data.eval)
    if evaluation is None:
        raise RecipeError("data.eval: missing key")
    train = _text(recipe, recipe.data.train)
    calibration = _text(recipe, recipe.data.calibration) or train or evaluation
    return _Texts(evaluation, train, calibration)


def eval_rows(tokenizer: Any, text: Text, length: int) -> Rows:
    groups = text.by_group()
    if not groups:
        return Rows({OVERALL: pack(tokenizer, text.passages, length)})
    return Rows({g: pack(tokenizer, passages, length) for g, passages in sorted(groups.items())})


def _prompts(rows: Rows, tokens: int) -> tuple[tuple[int, ...], ...]:
    every = np.concatenate(list(rows.groups.values()))
    return tuple(tuple(int(t) for t in row[:tokens]) for row in every[:_PROMPTS])


class _Candidates:
    """The float candidates as Hugging Face folders: the teacher, distilled, pruned."""

    def __init__(
        self, recipe: LmRecipe, source: LmSource, texts: _Texts, workdir: Path, step: Step
    ):
        self.recipe, self.source, self.texts = recipe, source, texts
        self.workdir, self.step = workdir, step

    def _train_rows(self, length: int) -> np.ndarray:
        if self.texts.train is None:
            raise RecipeError("data.train: expected text for distill/prune, found none")
        return pack(self.source.tokenizer, self.texts.train.passages, length)

    def _save(self, model: Any, stage: str) -> Path:
        folder = self.workdir / f"{stage}-hf"
        model.save_pretrained(folder)
        self.source.tokenizer.save_pretrained(folder)
        template = self.source.folder / "chat_template.jinja"
        if template.is_file():
            shutil.copyfile(template, folder / template.name)
        return folder

    def all(self) -> list[tuple[str, Path]]:
        out = [("baseline", self.source.folder)]
        step = self.recipe.steps
        if step.distill is None and step.prune is None:
            return out
        teacher = self.source.model()
        current = teacher
        if step.distill is not None:
            self.step("distilling")
            layers = tuple(step.distill.layers)
            config = LmDistillConfig(
                layers=layers,
                steps=step.distill.steps,
                lr=step.distill.lr,
                batch_size=step.distill.batch_size,
                temperature=step.distill.temperature,
                hidden_weight=step.distill.hidden_weight,
                seed=self.recipe.seed,
            )
            student = layer_student(teacher, layers)
            rows = self._train_rows(step.distill.seq_length)
            current = train_on_teacher(teacher, student, rows, config, layer_map=layers)
            out.append(("distilled", self._save(current, "distilled")))
        if step.prune is not None:
            self.step("pruning")
            pruned = prune_lm(current, LmPruneConfig(ffn=step.prune.ffn, heads=step.prune.heads))
            if step.prune.finetune_steps:
                recovery = LmDistillConfig(
                    layers=(),
                    steps=step.prune.finetune_steps,
                    lr=step.prune.lr,
                    batch_size=step.prune.batch_size,
                    seed=self.recipe.seed,
                )
                rows = self._train_rows(step.prune.seq_length)
                pruned = train_on_teacher(current, pruned, rows, recovery)
            out.append(("pruned", self._save(pruned, "pruned")))
        return out


def weight_only_configs(recipe: LmRecipe) -> list[WeightOnlyConfig]:
    step = recipe.steps.quantize
    if step is None:
        return []
    configs = []
    for precision, algorithm, block, head in itertools.product(
        step.precisions, step.algorithms, step.block_sizes, step.spare_lm_head
    ):
        bits: Literal[4, 8] = 4 if precision == "int4" else 8
        if bits == 8 and algorithm in ("gptq", "hqq"):
            continue  # ONNX Runtime runs these for 4 bits only
        config = WeightOnlyConfig(
            bits=bits,
            algorithm=algorithm,
            block_size=block,
            accuracy_level=step.accuracy_level,
            spare_lm_head=head,
        )
        if config not in configs:
            configs.append(config)
    return configs


class _LmSearch:
    """Builds, evaluates and selects; the baseline is evaluated before it starts."""

    def __init__(
        self,
        recipe: LmRecipe,
        evaluator: LmEvaluator,
        *,
        baseline: Variant,
        workdir: Path,
        calibration: list[dict[str, np.ndarray]],
        step: Step,
    ):
        self.recipe, self.evaluator, self.baseline = recipe, evaluator, baseline
        self.workdir, self.calibration, self.step = workdir, calibration, step
        self.provider = recipe.target.provider
        self.sensitivity: dict[str, list[BlockSensitivity]] = {}

    def add(
        self, name: str, folder: Path, stage: str, note: str = "", quantized: bool = False
    ) -> Variant:
        self.step(f"evaluating {name}")
        metrics = self.evaluator.evaluate(folder)
        budget = self.recipe.budget
        violations = lm_budget_violations(metrics, self.baseline.metrics, budget)
        return Variant(name, folder, stage, metrics, violations, note, quantized)

    def build(self, hf: Path, name: str, build: GenaiBuild) -> Path:
        self.step(f"building {name}")
        return build_genai(hf, self.workdir / name, build)

    def run(self, candidates: list[tuple[str, Path]], baseline_fp32: Path) -> SearchResult:
        variants: list[Variant] = []
        for stage, hf in candidates:
            if stage == "baseline":
                fp32, parent = baseline_fp32, self.baseline
            else:
                fp32 = self.build(hf, f"{stage}-fp32", GenaiBuild("fp32", self.provider))
                parent = self.add(f"{stage}-fp32", fp32, stage)
            variants.append(parent)
            for config in weight_only_configs(self.recipe):
                variant = self._weight_only(stage, hf, fp32, config)
                variants.append(variant)
                if parent.in_budget and not variant.in_budget and config.bits == 4:
                    variants.extend(self._fallback(stage, fp32, config))
            if self.provider == "cuda" or self.recipe.steps.half:
                variants.extend(self._half(stage, hf))
        return SearchResult(self.baseline, variants, select(variants), self.sensitivity)

    def _weight_only(self, stage: str, hf: Path, fp32: Path, config: WeightOnlyConfig) -> Variant:
        name = f"{stage}-{config.label}"
        if config.through_builder:
            folder = self.build(hf, name, builder_options(config, self.provider))
            note = "onnxruntime-genai builder"
        else:
            self.step(f"quantizing {name}")
            folder = quantize_folder(fp32, self.workdir / name, config, self.calibration)
            note = "ONNX Runtime MatMulNBitsQuantizer"
        return self.add(name, folder, stage, note, quantized=True)

    def _fallback(self, stage: str, fp32: Path, config: WeightOnlyConfig) -> list[Variant]:
        step = self.recipe.steps.quantize
        if step is None or step.fallback_max_layers == 0 or config.algorithm == "gptq":
            return []  # ONNX Runtime's GPTQ quantizes every MatMul or none
        key = f"{stage}-{config.label}"
        ranked = self._sensitivity(key, fp32, config)
        out = []
        for k in range(1, min(step.fallback_max_layers, len(ranked)) + 1):
            layers = tuple(sorted(int(item.block.rsplit(".", 1)[1]) for item in ranked[:k]))
            spared = replace(config, int8_layers=layers)
            name = f"{key}+int8x{k}"
            self.step(f"quantizing {name}")
            folder = quantize_folder(fp32, self.workdir / name, spared, self.calibration)
            note = "8-bit: " + ", ".join(item.block for item in ranked[:k])
            variant = self.add(name, folder, stage, note, quantized=True)
            out.append(variant)
            if variant.in_budget:
                break
        return out

    def _sensitivity(
        self, key: str, fp32: Path, config: WeightOnlyConfig
    ) -> list[BlockSensitivity]:
        """Each decoder layer quantized alone (the rest in float): how much worse the
        budget metric gets, most sensitive first."""
        self.step(f"sensitivity analysis of {key}")
        layers = _layer_count(fp32)
        reference = self.evaluator.metric_only(fp32)
        sign = 1.0 if self.recipe.budget.metric == "perplexity" else -1.0
        results = []
        for layer in range(layers):
            probe = self.workdir / f"{key}-sens-{layer}"
            quantize_folder(fp32, probe, config, self.calibration, only_layer=layer)
            score = self.evaluator.metric_only(probe)
            shutil.rmtree(probe)
            block = f"layers.{layer}"
            results.append(BlockSensitivity(block, (block,), sign * (score - reference)))
            self.step(f"sensitivity: {block}")
        ranked = sorted(results, key=lambda r: r.drop, reverse=True)
        self.sensitivity[key] = ranked
        return ranked

    def _half(self, stage: str, hf: Path) -> list[Variant]:
        """fp16/bf16 builds for CUDA; evaluated only where a CUDA provider runs them."""
        out = []
        for precision in ("fp16", "bf16"):
            name = f"{stage}-{precision}"
            folder = self.build(hf, name, GenaiBuild(precision, "cuda"))
            if self.provider == "cuda":
                out.append(self.add(name, folder, stage))
                continue
            metrics = replace(self.baseline.metrics, scores={}, groups={})
            metrics.metric, metrics.throughput, metrics.latency_ms = float("nan"), 0.0, 0.0
            from compress.lm.evaluate import lm_size_mb

            metrics.size_mb, metrics.memory_mb = lm_size_mb(folder), 0.0
            reason = "built for CUDA; not evaluated on this CPU target"
            out.append(Variant(name, folder, stage, metrics, [reason], "cuda build"))
        return out


def _layer_count(folder: Path) -> int:
    import json

    config = json.loads((folder / "genai_config.json").read_text(encoding="utf-8"))
    return int(config["model"]["decoder"]["num_hidden_layers"])


def _calibration(
    fp32: Path, recipe: LmRecipe, texts: _Texts, tokenizer: Any
) -> list[dict[str, np.ndarray]]:
    step = recipe.steps.quantize
    if step is None or "gptq" not in step.algorithms:
        return []
    rows = pack(tokenizer, texts.calibration.passages, recipe.target.eval_length)
    return [feeds(fp32, recipe.target, row[None]) for row in rows[: step.calibration_samples]]


def _budget_text(recipe: LmRecipe) -> str:
    budget = recipe.budget
    if budget.metric == "perplexity":
        bound = f"perplexity at most +{budget.max_increase:.0%} over the fp32 build"
        if budget.max_perplexity is not None:
            bound += f" and at most {budget.max_perplexity}"
    else:
        floor = 1 - (budget.max_drop or 0.0)
        bound = f"greedy next-token agreement with the fp32 build at least {floor:.2f}"
    return bound + " (overall and in every group)"


def _details(result: SearchResult, recipe: LmRecipe) -> list[str]:
    """The generation figures beside the main table: every concurrency, size ratio."""
    levels = recipe.target.concurrency
    header = ["variant", "perplexity", "Δ ppl", "agreement"]
    header += [f"tokens/s c{c}" for c in levels] + [f"TTFT c{c} (ms)" for c in levels]
    header += ["size ratio"]
    base = result.baseline.metrics
    rows = []
    for v in result.variants:
        s = v.metrics.scores
        ppl = s.get("perplexity", float("nan"))
        row = [v.name, f"{ppl:.3f}", f"{ppl / base.scores['perplexity'] - 1:+.1%}"]
        row.append(f"{s.get('agreement', float('nan')):.4f}")
        row += [f"{s.get(f'tokens_per_s_c{c}', float('nan')):.1f}" for c in levels]
        row += [f"{s.get(f'ttft_ms_c{c}', float('nan')):.1f}" for c in levels]
        row.append(f"{base.size_mb / v.metrics.size_mb:.2f}x" if v.metrics.size_mb else "-")
        rows.append(row)
    lines = [
        "## Generation",
        "",
        "Perplexity teacher-forced on the held-out text; agreement: "
        "greedy next token equal to the fp32 build's; tokens/s and time to first token "
        "with onnxruntime-genai's Engine.",
        "",
    ]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return [*lines, ""]


def run_lm(
    recipe: LmRecipe,
    out_dir: Path,
    key: Path | None = None,
    show_progress: bool = True,
    raise_on_budget: bool = True,
) -> Any:
    """Run a text-generation recipe; see ``compress.pipeline.run``."""
    from compress.pipeline import (
        _drop_unused,
        _Progress,
        _publish,
        _published,
        _staging,
    )

    out_dir = Path(out_dir).resolve()
    key = key or (recipe.resolve(recipe.package.key) if recipe.package else None)
    if recipe.package is not None and (key is None or not key.is_file()):
        raise RecipeError(f"package.key: expected a PEM private key file, found none at {key}")
    source = load_lm_source(recipe)
    texts = _texts(recipe)
    import torch

    torch.manual_seed(recipe.seed)
    rows = eval_rows(source.tokenizer, texts.eval, recipe.target.eval_length)
    with _staging(out_dir) as tmp, _Progress(show_progress) as progress:
        workdir = tmp / "variants"
        workdir.mkdir()
        candidates = _Candidates(recipe, source, texts, workdir, progress.step).all()
        progress.step("building baseline-fp32")
        fp32 = build_genai(
            source.folder, workdir / "baseline-fp32", GenaiBuild("fp32", recipe.target.provider)
        )
        evaluator = LmEvaluator(
            rows, _prompts(rows, recipe.target.prompt_tokens), recipe.target, recipe.budget
        ).with_reference(fp32)
        progress.step("evaluating baseline-fp32")
        metrics = evaluator.evaluate(fp32)
        baseline = Variant(
            "baseline-fp32",
            fp32,
            "baseline",
            metrics,
            lm_budget_violations(metrics, metrics, recipe.budget),
        )
        calibration = _calibration(fp32, recipe, texts, source.tokenizer)
        search = _LmSearch(
            recipe,
            evaluator,
            baseline=baseline,
            workdir=workdir,
            calibration=calibration,
            step=progress.step,
        )
        result = search.run(candidates, fp32)
        _drop_unused(workdir, result.variants)
        progress.step("writing the report")
        report = write_report(
            result,
            tmp,
            recipe.name,
            recipe.budget.metric,
            _budget_text(recipe),
            extra=_details(result, recipe),
            speed=LM_SPEED,
        )
        package = None
        if result.selected is not None and recipe.package is not None and key is not None:
            progress.step("packaging and signing")
            from compress.lm.package import package_lm

            package = package_lm(recipe, result, source, key=key, out_dir=tmp)
        _publish(tmp, out_dir)
    return _published(
        result,
        tmp,
        out_dir,
        report=report,
        package=package,
        budget=_budget_text(recipe),
        raise_on_budget=raise_on_budget,
    )


__all__ = ["LM_SPEED", "eval_rows", "run_lm", "weight_only_configs"]
