"""Text-generation recipes end to end on a tiny Llama trained by a script: variants built
by onnxruntime-genai's builder and ONNX Runtime's weight-only quantizers, evaluated,
reported and packaged; bad recipes through the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from appliance.errors import SignatureError
from appliance.package import unpack_package, verify_package
from appliance.package.generative import greedy_continuations
from compress.lm.tiny import corpus
from compress.pipeline import CompressResult, run
from compress.recipe import parse_recipe
from tests._daemon import daemon_environment
from tests._lm import TINY, hf_llama

SCRIPT = Path(sys.executable).parent / "appliance"


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train.txt, eval.txt and eval.csv (with a ``site`` group) from the clinical corpus."""
    folder = tmp_path_factory.mktemp("lm-text")
    train, held_out = corpus(TINY)
    (folder / "train.txt").write_text("\n".join(train[:1000]))
    (folder / "eval.txt").write_text("\n".join(held_out[:120]))
    sites = ["north" if i % 2 else "south" for i in range(120)]
    pd.DataFrame({"text": held_out[:120], "site": sites}).to_csv(folder / "eval.csv", index=False)
    return folder


def _recipe(texts: Path, **overrides: Any) -> dict[str, Any]:
    recipe: dict[str, Any] = {
        "name": "notes-lm",
        "version": 3,
        "task": "text-generation",
        "source": {"huggingface": str(hf_llama())},
        "data": {"train": {"path": "train.txt"}, "eval": {"path": "eval.txt"}},
        "steps": {
            "distill": {"layers": [1], "steps": 4, "seq_length": 32},
            "quantize": {"algorithms": ["rtn"], "fallback_max_layers": 0},
        },
        "target": {"eval_length": 64, "new_tokens": 8, "speed_rounds": 1},
        "budget": {"metric": "perplexity", "max_increase": 0.05},
    }
    recipe.update(overrides)
    return recipe


@pytest.fixture(scope="module")
def lm_run(
    texts: Path, keys: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> CompressResult:
    raw = _recipe(texts, package={"key": str(keys[0]), "golden_cases": 2, "golden_tokens": 6})
    out = tmp_path_factory.mktemp("lm-runs") / "out"
    return run(parse_recipe(raw, texts), out, show_progress=False)


def test_every_candidate_is_built_quantized_and_measured(lm_run: CompressResult) -> None:
    variants = {v.name: v for v in lm_run.search.variants}
    assert list(variants) == [
        "baseline-fp32",
        "baseline-int4-rtn-b32",
        "distilled-fp32",
        "distilled-int4-rtn-b32",
    ]
    base, int4 = variants["baseline-fp32"].metrics, variants["baseline-int4-rtn-b32"].metrics
    assert base.scores["agreement"] == 1.0  # the fp32 build is the reference
    assert 0.5 < int4.scores["agreement"] < 1.0  # int4 differs, but not wildly
    assert base.size_mb / int4.size_mb > 2.5
    for v in variants.values():
        assert np.isfinite(v.metrics.scores["perplexity"]) and v.metrics.scores["perplexity"] > 1
        assert v.metrics.scores["tokens_per_s_c1"] > 0 and v.metrics.scores["tokens_per_s_c8"] > 0
        assert v.metrics.scores["ttft_ms_c8"] > 0
        assert (v.path / "genai_config.json").is_file()
    # One decoder layer instead of two, as the recipe asked.
    config = json.loads((variants["distilled-fp32"].path / "genai_config.json").read_text())
    assert config["model"]["decoder"]["num_hidden_layers"] == 1
    # The fastest within budget (tokens/s at concurrency 1); speed on a tiny model is
    # noise, so which one wins is not asserted.
    selected = lm_run.search.selected
    assert selected is not None and selected.in_budget
    in_budget = [v for v in variants.values() if v.in_budget]
    assert selected.metrics.throughput == max(v.metrics.throughput for v in in_budget)


def test_the_report_shows_generation_figures(lm_run: CompressResult) -> None:
    report = lm_run.report.read_text()
    assert "## Generation" in report and "tokens/s c8" in report and "TTFT c1 (ms)" in report
    for variant in lm_run.search.variants:
        assert variant.name in report
    assert (lm_run.out_dir / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert "<h2>Variants</h2>" in (lm_run.out_dir / "report.html").read_text()


def test_the_package_verifies_every_file_and_generates_its_golden_tokens(
    lm_run: CompressResult, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    assert lm_run.package is not None and lm_run.package.name == "notes-lm-3.apkg"
    manifest = verify_package(lm_run.package, [keys[1]])
    assert manifest.task == "text-generation"
    assert manifest.provenance.metrics_before["perplexity"] > 1
    assert "tokens_per_s_c1" in manifest.provenance.metrics_after
    with tarfile.open(lm_run.package) as tar:
        names = set(tar.getnames())
    assert {"model.onnx", "model.onnx.data", "genai_config.json", "tokenizer.json"} <= names
    folder = tmp_path / "pkg"
    unpack_package(lm_run.package, folder)
    # The unpacked folder loads in onnxruntime-genai and continues each golden prompt
    # with exactly the recorded token ids, as the box's self-test will check.
    golden = manifest.generation_golden
    assert golden is not None and len(golden.cases) == 2
    for case in golden.cases:
        (ids,) = greedy_continuations(folder, [case.prompt], case.max_tokens)
        assert ids == case.token_ids and len(ids) > 0
    # Every file is signed: a changed genai_config.json fails verification.
    config = folder / "genai_config.json"
    config.write_text(config.read_text().replace('"do_sample": false', '"do_sample": true'))
    with pytest.raises(SignatureError, match="genai_config"):
        verify_package(folder, [keys[1]])


def _console(recipe: dict[str, Any], folder: Path, out: Path) -> subprocess.CompletedProcess[str]:
    path = folder / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return subprocess.run(
        [str(SCRIPT), "compress", str(path), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        env=daemon_environment(),
        timeout=600,
        check=False,
    )


def test_an_unsupported_architecture_exits_2_naming_the_supported(
    texts: Path, tmp_path: Path
) -> None:
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    (gpt2 / "config.json").write_text('{"architectures": ["GPT2LMHeadModel"]}')
    done = _console(_recipe(texts, source={"huggingface": str(gpt2)}), texts, tmp_path / "a")
    assert done.returncode == 2, done.stderr
    assert "GPT2LMHeadModel" in done.stderr and "LlamaForCausalLM" in done.stderr


def test_missing_text_exits_2_naming_the_file(texts: Path, tmp_path: Path) -> None:
    raw = _recipe(texts, data={"train": {"path": "train.txt"}, "eval": {"path": "nowhere.txt"}})
    done = _console(raw, texts, tmp_path / "b")
    assert done.returncode == 2, done.stderr
    assert "nowhere.txt: no such file" in done.stderr


def test_a_budget_no_variant_meets_exits_3_with_the_report_and_no_package(
    texts: Path, tmp_path: Path
) -> None:
    raw = _recipe(
        texts,
        steps={"quantize": {"algorithms": ["rtn"]}},
        budget={"metric": "perplexity", "max_increase": 0.05, "max_perplexity": 1.01},
    )
    out = tmp_path / "c"
    done = _console(raw, texts, out)
    assert done.returncode == 3, done.stderr
    assert "no variant meets the budget" in done.stderr and "at most 1.01" in done.stderr
    assert "No variant meets the budget" in (out / "report.md").read_text()
    assert not list(out.glob("*.apkg"))


def test_int4_over_an_agreement_budget_spares_its_most_sensitive_layers_at_8_bit(
    texts: Path, tmp_path: Path
) -> None:
    """Agreement must stay exact: int4 breaks it; the sensitivity analysis ranks both
    layers and the fallback spares them at 8 bit one more at a time (still short: the
    lm_head stays int4), per group too; the fp32 build is what stays within budget."""
    raw = _recipe(
        texts,
        data={"eval": {"path": "eval.csv", "group": "site"}},
        steps={"quantize": {"algorithms": ["rtn"], "fallback_max_layers": 2}},
        budget={"metric": "agreement", "max_drop": 0.0},
    )
    result = run(parse_recipe(raw, texts), tmp_path / "d", show_progress=False)
    names = [v.name for v in result.search.variants]
    assert names == [
        "baseline-fp32",
        "baseline-int4-rtn-b32",
        "baseline-int4-rtn-b32+int8x1",
        "baseline-int4-rtn-b32+int8x2",
    ]
    ranked = result.search.sensitivity["baseline-int4-rtn-b32"]
    assert sorted(item.block for item in ranked) == ["layers.0", "layers.1"]
    int4, spared = result.search.variants[1], result.search.variants[3]
    assert spared.metrics.size_mb > int4.metrics.size_mb  # two layers at 8 bit
    assert any(r.startswith("group north") for r in int4.violations)
    assert result.search.selected is not None and result.search.selected.name == "baseline-fp32"
    report = result.report.read_text()
    assert "## Quantization sensitivity" in report and "## Per group" in report
