"""``appliance compress``: run a recipe end to end and write ``--out`` atomically.

Load data and source -> export the uncompressed model (the baseline) -> distill ->
prune (with recovery fine-tuning) -> export each float candidate and optimise its graph
-> search over quantized variants with sensitivity fallback -> report -> signed package
of the selected variant. Everything is written in a temporary folder beside ``--out``
and renamed at the end, so a failed run leaves nothing half-written; when no variant
meets the budget the report is still written, no package is, and ``BudgetError`` is raised.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from compress._inputs import InputAdapter
from compress.data import Dataset, check_compatible, load_dataset
from compress.errors import BudgetError, CompressError, RecipeError
from compress.evaluate import Evaluator
from compress.export import export_huggingface, export_module
from compress.passes.channels import ChannelConfig, prune_channels
from compress.passes.distill import DistillConfig, distill_classifier
from compress.passes.encoder_distill import (
    EncoderDistillConfig,
    check_layer_map,
    default_layer_map,
    distill_encoder,
    encoder_layers,
    layer_student,
)
from compress.passes.magnitude import MagnitudeConfig, magnitude_prune
from compress.passes.optimize import OptimizeConfig, optimize_graph
from compress.passes.transformer import TransformerPruneConfig, prune_transformer
from compress.recipe import DataSpec, DistillStep, LmRecipe, Recipe
from compress.report import write_report
from compress.search import Search, SearchResult, Variant, baseline_variant
from compress.source import SourceModel, load_source

log = logging.getLogger(__name__)
_PROFILE_SAMPLES = 512
_CALIBRATION_BATCH = 32


@dataclass
class CompressResult:
    out_dir: Path
    report: Path
    package: Path | None
    search: SearchResult


@dataclass
class _Data:
    eval: Dataset
    train: Dataset | None
    calibration: Dataset


class _Progress:
    """Rich progress bars for long steps; silent when ``show`` is false (tests, scripts)."""

    def __init__(self, show: bool):
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            disable=not show,
        )
        self._task = self._bar.add_task("starting", total=None)

    def __enter__(self) -> _Progress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def step(self, message: str) -> None:
        self._bar.update(self._task, description=message, total=None, completed=0)
        log.debug(message)

    def epochs(self, label: str) -> Callable[[int, int], None]:
        def update(done: int, total: int) -> None:
            self._bar.update(self._task, description=label, completed=done, total=total)

        return update


def _load(recipe: Recipe, spec: DataSpec | None) -> Dataset | None:
    return None if spec is None else load_dataset(spec, recipe.resolve(spec.path))


def _load_data(recipe: Recipe) -> _Data:
    evaluation = _load(recipe, recipe.data.eval)
    if evaluation is None:
        raise RecipeError("data.eval: missing key")
    train = _load(recipe, recipe.data.train)
    calibration = _load(recipe, recipe.data.calibration) or train or evaluation
    for what, data in (("data.train", train), ("data.calibration", calibration)):
        if data is not None:
            check_compatible(data, evaluation, what)
    return _Data(evaluation, train, calibration)


def _recovery(recipe: Recipe) -> DistillConfig:
    prune = recipe.steps.prune
    if prune is None:
        raise RecipeError("steps.prune: missing key")
    return DistillConfig(
        epochs=max(1, prune.finetune_epochs),
        lr=prune.lr,
        batch_size=prune.batch_size,
        seed=recipe.seed,
    )


def _encoder_config(step: DistillStep, teacher: nn.Module, seed: int) -> EncoderDistillConfig:
    """Layer distillation of a Hugging Face encoder into the teacher layers ``step.layers``."""
    layers, depth = step.layers or [], len(encoder_layers(teacher))
    layer_map = tuple(step.layer_map or default_layer_map(layers, depth))
    try:
        check_layer_map(layer_map, len(layers), depth)
    except ValueError as exc:
        raise RecipeError(f"steps.distill.{exc}") from exc
    return EncoderDistillConfig(
        epochs=step.epochs,
        lr=step.lr,
        batch_size=step.batch_size,
        seed=seed,
        layer_map=layer_map,
        cosine_weight=step.cosine_weight,
        hidden_weight=step.hidden_weight,
        attention_weight=step.attention_weight,
        freeze_embeddings=step.freeze_embeddings,
    )


class _Candidates:
    """Makes the float candidates (baseline, distilled, pruned) as ONNX files."""

    def __init__(
        self,
        recipe: Recipe,
        source: SourceModel,
        data: _Data,
        adapter: InputAdapter,
        *,
        workdir: Path,
        progress: _Progress,
    ):
        self.recipe, self.source, self.data, self.adapter = recipe, source, data, adapter
        self.workdir, self.progress = workdir, progress

    def export(self, model: nn.Module, stage: str) -> Path:
        self.progress.step(f"exporting {stage}")
        raw = self.workdir / f"{stage}-export.onnx"
        if self.source.kind == "huggingface":
            task = (
                "feature-extraction" if self.recipe.task == "embedding" else "text-classification"
            )
            export_huggingface(model, raw, task)
        else:
            x = self.data.eval.x
            if not isinstance(x, np.ndarray):
                raise CompressError("module sources expect array data, got text")
            export_module(model, x, raw)
        return self._optimize(raw, stage)

    def _optimize(self, raw: Path, stage: str) -> Path:
        out = optimize_graph(raw, self.workdir / f"{stage}.onnx", OptimizeConfig())
        raw.unlink()
        return out

    def baseline(self) -> Path:
        if self.source.onnx_path is not None:
            copied = self.workdir / "baseline-export.onnx"
            shutil.copyfile(self.source.onnx_path, copied)
            return self._optimize(copied, "baseline")
        return self.export(self._teacher(), "baseline")

    def _teacher(self) -> nn.Module:
        if self.source.module is None:
            raise CompressError("expected a PyTorch teacher")
        return self.source.module

    def _train(self) -> Dataset:
        if self.data.train is None:
            raise RecipeError("data.train: expected a data set for distill/prune, found none")
        return self.data.train

    def _fit(
        self,
        teacher: nn.Module,
        student: nn.Module,
        config: DistillConfig,
        label: str,
        encoder: EncoderDistillConfig | None = None,
    ) -> nn.Module:
        train = self._train()
        callback = self.progress.epochs(label)
        if isinstance(train.x, list):
            encoder = encoder or EncoderDistillConfig(
                epochs=config.epochs, lr=config.lr, batch_size=config.batch_size, seed=config.seed
            )
            return distill_encoder(
                teacher, student, train.x, self.adapter, encoder, progress=callback
            )
        return distill_classifier(teacher, student, train.x, train.y, config, progress=callback)

    def distilled(self) -> nn.Module | None:
        step = self.recipe.steps.distill
        if step is None:
            return None
        teacher = self._teacher()
        if self.source.kind == "huggingface":
            if self.recipe.task != "embedding" or not step.layers:
                raise RecipeError(
                    "steps.distill.layers: expected the teacher layers to keep "
                    "(Hugging Face embedding models)"
                )
            student = layer_student(teacher, step.layers)
            encoder = _encoder_config(step, teacher, self.recipe.seed)
        else:
            encoder = None
            if step.student_kwargs is None:
                raise RecipeError(
                    "steps.distill.student_kwargs: expected the student's "
                    "factory arguments, found none"
                )
            try:
                student = self.source.factory(
                    **{**self.recipe.source.kwargs, **step.student_kwargs}
                )
            except TypeError as exc:
                raise RecipeError(f"steps.distill.student_kwargs: rejected: {exc}") from exc
            _copy_buffers(teacher, student)
        config = DistillConfig(
            epochs=step.epochs,
            lr=step.lr,
            batch_size=step.batch_size,
            temperature=step.temperature,
            alpha=step.alpha,
            seed=self.recipe.seed,
        )
        return self._fit(teacher, student, config, "distilling", encoder)

    def pruned(self, model: nn.Module) -> nn.Module | None:
        step = self.recipe.steps.prune
        if step is None:
            return None
        self.progress.step("pruning")
        if self.source.kind == "huggingface":
            pruned = prune_transformer(
                model, TransformerPruneConfig(ffn=step.structured, heads=step.heads)
            )
        else:
            pruned = prune_channels(model, ChannelConfig(step.structured))
        if step.magnitude:
            pruned = magnitude_prune(pruned, MagnitudeConfig(step.magnitude))
        if step.finetune_epochs == 0:
            return pruned
        recovered = self._fit(model, pruned, _recovery(self.recipe), "recovery fine-tuning")
        if step.magnitude:  # fine-tuning revives zeros; re-apply the mask it trained around
            recovered = magnitude_prune(recovered, MagnitudeConfig(step.magnitude))
        return recovered

    def all(self) -> list[tuple[str, Path]]:
        candidates = [("baseline", self.baseline())]
        current = self.source.module
        distilled = self.distilled()
        if distilled is not None:
            candidates.append(("distilled", self.export(distilled, "distilled")))
            current = distilled
        if current is not None:
            pruned = self.pruned(current)
            if pruned is not None:
                candidates.append(("pruned", self.export(pruned, "pruned")))
        return candidates


def _copy_buffers(teacher: nn.Module, student: nn.Module) -> None:
    """Input standardisation (TabularMLP's mean/std) carries over to a narrower student."""
    teacher_buffers = dict(teacher.named_buffers())
    for name, buffer in student.named_buffers():
        source = teacher_buffers.get(name)
        if source is not None and source.shape == buffer.shape:
            buffer.copy_(source)


def _calibration(data: Dataset, adapter: InputAdapter, n: int) -> list[dict[str, np.ndarray]]:
    x = data.x[:n]
    return [
        adapter.arrays(x[i : i + _CALIBRATION_BATCH]) for i in range(0, len(x), _CALIBRATION_BATCH)
    ]


def _labels(recipe: Recipe, data: _Data) -> tuple[str, ...] | None:
    if recipe.labels:
        return tuple(recipe.labels)
    return data.eval.classes


def _package(
    recipe: Recipe,
    result: SearchResult,
    data: _Data,
    adapter: InputAdapter,
    *,
    source: SourceModel,
    out_dir: Path,
    key: Path,
) -> Path:
    from appliance import __version__
    from appliance.package import (
        Manifest,
        Provenance,
        build_package,
        make_golden,
        make_reference_profile,
        specs_from_onnx,
    )

    selected = result.selected
    if selected is None or recipe.package is None:
        raise CompressError("nothing to package")
    onnx_path = selected.path
    inputs, outputs = specs_from_onnx(onnx_path)
    # Integer kernels round differently per instruction set and provider.
    rtol, atol = (5e-2, 5e-2) if selected.quantized else (1e-3, 1e-3)
    golden_x = data.eval.x[: recipe.package.golden_cases]
    golden = make_golden(
        onnx_path,
        _only(adapter.arrays(golden_x), inputs),
        n=recipe.package.golden_cases,
        rtol=rtol,
        atol=atol,
    )
    profile_x = data.calibration.x[:_PROFILE_SAMPLES]
    profile = make_reference_profile(
        onnx_path,
        _only(adapter.arrays(profile_x), inputs),
        task=recipe.task,
        labels=_labels(recipe, data),
    )
    recipe_dump: dict[str, Any] = recipe.model_dump(mode="json", exclude={"base_dir"})
    manifest = Manifest(
        name=recipe.name,
        version=recipe.version,
        task=recipe.task,
        inputs=inputs,
        outputs=outputs,
        labels=_labels(recipe, data),
        max_batch_size=recipe.package.max_batch_size,
        provenance=Provenance(
            source_model=source.description,
            recipe=recipe_dump,
            metrics_before=result.baseline.metrics.as_dict(),
            metrics_after=selected.metrics.as_dict(),
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            tool=f"appliance {__version__}",
        ),
        reference_profile=profile,
        golden=golden,
        embedding=_embedding_section(recipe),
    )
    if recipe.task != "embedding":
        return build_package(onnx_path, manifest, key, out_dir)
    with tempfile.TemporaryDirectory(prefix="tokenizer-") as tmp:
        files = _tokenizer_files(source, Path(tmp))
        return build_package(onnx_path, manifest, key, out_dir, extra_files=files)


def _embedding_section(recipe: Recipe) -> Any:
    """How the box pools an embedding package: as the evaluation here did (mask-aware
    mean, L2-normalised; ``compress._inputs``)."""
    if recipe.task != "embedding":
        return None
    from appliance.package.manifest import Embedding

    return Embedding(pooling="mean", normalize=True)


def _tokenizer_files(source: SourceModel, folder: Path) -> list[Path]:
    """The source's tokenizer as ``save_pretrained`` writes it: an embedding package
    carries it, so the box tokenizes as the model was evaluated."""
    if source.tokenizer is None:
        raise CompressError(
            "an embedding package carries its tokenizer, and this source has none: "
            "expected a Hugging Face source (source.huggingface)"
        )
    source.tokenizer.save_pretrained(folder)
    names = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
    return [folder / n for n in names if (folder / n).is_file()]


def _only(arrays: dict[str, np.ndarray], specs: Any) -> dict[str, np.ndarray]:
    names = {s.name for s in specs}
    return {k: v for k, v in arrays.items() if k in names}


def _budget_text(recipe: Recipe) -> str:
    parts = []
    if recipe.budget.max_drop is not None:
        parts.append(f"{recipe.budget.metric} at most {recipe.budget.max_drop} below fp32")
    if recipe.budget.min_value is not None:
        parts.append(f"{recipe.budget.metric} at least {recipe.budget.min_value}")
    return " and ".join(parts) + " (overall and in every group)"


@contextlib.contextmanager
def _staging(out_dir: Path) -> Iterator[Path]:
    """A temporary folder beside ``out_dir``, removed unless the caller renamed it."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, out_dir: Path) -> None:
    """Rename the finished folder into place, replacing an older run's output."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def run(
    recipe: Recipe | LmRecipe,
    out_dir: Path,
    key: Path | None = None,
    show_progress: bool = True,
    raise_on_budget: bool = True,
) -> CompressResult:
    """Run ``recipe``; write variants, report and package into ``out_dir`` atomically.

    When no variant meets the budget the report is still published and ``BudgetError``
    raised (or, with ``raise_on_budget=False``, the result returned with no package).
    Text-generation recipes run in ``compress.lm.pipeline``.
    """
    if isinstance(recipe, LmRecipe):
        from compress.lm.pipeline import run_lm

        done: CompressResult = run_lm(recipe, out_dir, key, show_progress, raise_on_budget)
        return done
    out_dir = Path(out_dir).resolve()
    key = key or (recipe.resolve(recipe.package.key) if recipe.package else None)
    if recipe.package is not None and (key is None or not key.is_file()):
        raise RecipeError(f"package.key: expected a PEM private key file, found none at {key}")
    torch.manual_seed(recipe.seed)
    data = _load_data(recipe)
    source = load_source(recipe)
    adapter = InputAdapter(source.tokenizer, recipe.target.seq_length)
    with _staging(out_dir) as tmp, _Progress(show_progress) as progress:
        workdir = tmp / "variants"
        workdir.mkdir()
        candidates = _Candidates(
            recipe, source, data, adapter, workdir=workdir, progress=progress
        ).all()
        calibration = _calibration(
            data.calibration,
            adapter,
            recipe.steps.quantize.calibration_samples if recipe.steps.quantize else 256,
        )
        evaluator = Evaluator(data.eval, adapter, recipe.task, recipe.target, recipe.budget)
        baseline_path = candidates[0][1]
        if recipe.task == "embedding":
            evaluator = evaluator.with_reference(baseline_path)
        # One run before measuring, so one-off allocations (thread pools, arenas, lazily
        # imported modules) are not charged to the baseline's memory.
        evaluator.warm_up(baseline_path)
        progress.step("evaluating baseline-fp32")
        baseline = baseline_variant(evaluator, baseline_path, recipe.budget)
        search = Search(
            recipe, evaluator, workdir, calibration, baseline=baseline, step=progress.step
        )
        result = search.run(candidates)
        _drop_unused(workdir, result.variants)
        progress.step("writing the report")
        report = write_report(result, tmp, recipe.name, recipe.budget.metric, _budget_text(recipe))
        package = None
        if result.selected is not None and recipe.package is not None and key is not None:
            progress.step("packaging and signing")
            package = _package(recipe, result, data, adapter, source=source, out_dir=tmp, key=key)
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


def _published(
    result: SearchResult,
    tmp: Path,
    out_dir: Path,
    *,
    report: Path,
    package: Path | None,
    budget: str,
    raise_on_budget: bool,
) -> CompressResult:
    """The result with its paths moved from the staging folder to ``out_dir``; a
    ``BudgetError`` (after the report is published) when no variant met the budget."""
    report = out_dir / report.name
    if package is not None:
        package = out_dir / package.name
    _repoint(result, tmp / "variants", out_dir / "variants")
    if result.selected is None and raise_on_budget:
        raise BudgetError(
            f"no variant meets the budget ({budget}); see {report}; no package written"
        )
    return CompressResult(out_dir, report, package, result)


def _drop_unused(workdir: Path, variants: list[Variant]) -> None:
    """Keep the variants' models (files or folders); drop intermediates (pre-processed
    graphs, Hugging Face folders, builder caches)."""
    keep = {v.path.name for v in variants}
    for path in workdir.iterdir():
        if path.name not in keep:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def _repoint(result: SearchResult, old: Path, new: Path) -> None:
    for variant in result.variants:
        if variant.path.parent == old:
            variant.path = new / variant.path.name


__all__ = ["CompressResult", "run"]
