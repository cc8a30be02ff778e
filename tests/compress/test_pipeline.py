"""End to end: recipe -> variants -> report -> signed package, and the budget gate."""

from __future__ import annotations

import argparse
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from appliance.cli import compress as compress_cli
from appliance.cli import main as cli_main
from appliance.errors import SignatureError
from appliance.package import unpack_package, verify_package
from compress.errors import BudgetError
from compress.evaluate import Metrics, budget_violations
from compress.pipeline import CompressResult, run
from compress.recipe import Budget, parse_recipe
from tests.compress.conftest import Task


def _tabular_recipe(task: Task, keys: tuple[Path, Path], **overrides: Any) -> dict[str, Any]:
    recipe: dict[str, Any] = {
        "name": "breast-cancer",
        "version": 2,
        "task": "classification",
        "labels": ["malignant", "benign"],
        "source": {
            "module": "compress.models:TabularMLP",
            "kwargs": {"in_features": 30, "num_classes": 2},
            "weights": "teacher.pt",
        },
        "data": {"train": {"path": "train.csv"}, "eval": {"path": "eval.parquet", "group": "site"}},
        "steps": {
            "distill": {"student_kwargs": {"hidden": [16]}, "epochs": 25},
            "prune": {"structured": 0.5, "finetune_epochs": 10},
            "quantize": {"modes": ["dynamic", "static"], "calibration": ["minmax"]},
        },
        "target": {"threads": 2, "latency_runs": 5},
        "budget": {"metric": "accuracy", "max_drop": 0.03},
        "package": {"key": str(keys[0])},
    }
    recipe.update(overrides)
    return recipe


@pytest.fixture(scope="module")
def tabular_run(
    tabular: Task, keys: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> CompressResult:
    recipe = parse_recipe(_tabular_recipe(tabular, keys), tabular.folder)
    return run(recipe, tmp_path_factory.mktemp("runs") / "out", show_progress=False)


def test_every_step_appears(tabular_run: CompressResult) -> None:
    names = [v.name for v in tabular_run.search.variants]
    for stage in ("baseline", "distilled", "pruned"):
        assert f"{stage}-fp32" in names
        assert f"{stage}-int8-dyn-pc" in names
        assert f"{stage}-int8-static-minmax-qdq-pc" in names
    assert tabular_run.search.selected is not None and tabular_run.search.selected.in_budget


def test_report_lists_all_variants(tabular_run: CompressResult) -> None:
    report = tabular_run.report.read_text()
    for variant in tabular_run.search.variants:
        assert variant.name in report
    assert "## Per group" in report and "north" in report
    assert (tabular_run.out_dir / "report.html").read_text().count("<tr>") > 5
    assert (tabular_run.out_dir / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tabular_run.out_dir.parent.glob(".out.*"))  # staging folder renamed


def test_package_signed_with_profile_and_golden(
    tabular_run: CompressResult, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    assert tabular_run.package is not None
    assert tabular_run.package.name == "breast-cancer-2.apkg"
    manifest = verify_package(tabular_run.package, [keys[1]])
    assert manifest.labels == ("malignant", "benign")
    assert manifest.provenance.metrics_before["accuracy"] > 0.9
    assert "throughput_b32" in manifest.provenance.metrics_after
    assert manifest.provenance.recipe is not None
    profile = manifest.reference_profile
    assert profile is not None and profile["inputs"]["input"]["kind"] == "tabular"
    assert profile["outputs"]["logits"]["kind"] == "classifier"
    assert manifest.golden is not None and len(manifest.golden.cases) == 4
    # A flipped byte in the model fails verification.
    folder = tmp_path / "pkg"
    unpack_package(tabular_run.package, folder)
    model = folder / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-10] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(SignatureError, match=r"model\.onnx"):
        verify_package(folder, [keys[1]])


def test_budget_gate_writes_report_but_no_package(
    tabular: Task, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    raw = _tabular_recipe(tabular, keys, budget={"metric": "accuracy", "min_value": 1.01})
    raw["steps"] = {"quantize": {"modes": ["dynamic"], "fallback_max_layers": 0}}
    out = tmp_path / "out"
    with pytest.raises(BudgetError, match="no variant meets the budget"):
        run(parse_recipe(raw, tabular.folder), out, show_progress=False)
    assert "No variant meets the budget" in (out / "report.md").read_text()
    assert not list(out.glob("*.apkg"))


def test_group_budget_applies_per_group() -> None:
    baseline = Metrics(metric=0.95, scores={}, groups={"north": 0.95, "south": 0.95})
    hurt = Metrics(metric=0.94, scores={}, groups={"north": 0.99, "south": 0.89})
    reasons = budget_violations(hurt, baseline, Budget(metric="accuracy", max_drop=0.02))
    assert len(reasons) == 1 and reasons[0].startswith("group south")


def test_cli_compress_digits_cnn(
    digits: Task, keys: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = {
        "name": "digits",
        "task": "classification",
        "source": {
            "module": "compress.models:SmallCNN",
            "kwargs": {"in_channels": 1, "num_classes": 10, "width": 8},
            "weights": str(digits.folder / "teacher.pt"),
        },
        "data": {
            "train": {"path": str(digits.folder / "train.npz"), "label": "y"},
            "eval": {"path": str(digits.folder / "eval.npz"), "label": "y"},
        },
        "steps": {
            "prune": {"structured": 0.25, "magnitude": 0.2, "finetune_epochs": 3},
            "quantize": {"modes": ["static"], "calibration": ["percentile"]},
        },
        "target": {"latency_runs": 3},
        "budget": {"metric": "f1", "max_drop": 0.05},
    }
    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump(recipe))
    parser = argparse.ArgumentParser()
    compress_cli.register(parser.add_subparsers())
    args = parser.parse_args(
        ["compress", str(path), "--out", str(tmp_path / "out"), "--key", str(keys[0]), "--quiet"]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "selected:" in out
    assert not list((tmp_path / "out").glob("*.apkg"))  # no package section: report only
    assert (tmp_path / "out" / "variants" / "pruned.onnx").exists()
    assert "pruned-int8-static-percentile-qdq-pc" in (tmp_path / "out" / "report.md").read_text()


def test_cli_budget_failure_exit_code(
    tabular: Task, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    raw = _tabular_recipe(tabular, keys, budget={"metric": "auroc", "min_value": 1.5})
    raw["steps"] = {"quantize": None}
    path = tabular.folder / "impossible.yaml"
    path.write_text(yaml.safe_dump(raw))
    # Through the CLI's entry point: its error boundary turns the BudgetError into the code.
    assert cli_main(["compress", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 3


def test_package_tar_has_only_package_files(tabular_run: CompressResult) -> None:
    assert tabular_run.package is not None
    with tarfile.open(tabular_run.package) as tar:
        assert sorted(tar.getnames()) == ["model.json", "model.onnx", "model.sig"]
    assert np.isfinite(tabular_run.search.baseline.metrics.throughput)
