"""Fixtures for the quality loop: a small classifier in three variants, packaged with the
project's own CLI, the site's labelled evaluation data, and a daemon that gates on it.

The data: four standard-normal features; the label is ``pos`` when feature 1 is above
zero; the group is ``rare`` for the tenth of rows whose feature 0 is above 1.2816 (the
normal's 90th percentile), else ``common``. The variants, all (batch, 4) FP32 ->
``probabilities`` (batch, 2):

- ``good``: softmax of (-4 x1, 4 x1), right on every row;
- ``worse``: the same of feature 2, a coin toss against the labels;
- ``rare_wrong``: ``good`` with its answer flipped on the rare group only, so overall it
  loses about a tenth while the rare group loses everything.

Each passes its own self-test: its golden cases are made from it at build time.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests._daemon import DaemonProcess

MODEL = "triage"
LABELS = ("neg", "pos")
RARE_CUT = 1.2816


def classifier(path: Path, variant: str) -> Path:
    feature = 2 if variant == "worse" else 1
    weights = np.zeros((4, 2), dtype=np.float32)
    weights[feature] = (-4.0, 4.0)
    inits = [
        numpy_helper.from_array(weights, "w"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "first"),
        numpy_helper.from_array(np.array(RARE_CUT, dtype=np.float32), "cut"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two"),
    ]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["logits"])]
    if variant == "rare_wrong":
        nodes += [
            helper.make_node("Gather", ["x", "first"], ["x0"], axis=1),  # (batch, 1)
            helper.make_node("Greater", ["x0", "cut"], ["rare"]),
            helper.make_node("Cast", ["rare"], ["rare_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["rare_f", "two"], ["twice"]),
            helper.make_node("Sub", ["one", "twice"], ["sign"]),  # -1 on rare rows
            helper.make_node("Mul", ["logits", "sign"], ["signed"]),
        ]
        last = "signed"
    else:
        last = "logits"
    nodes.append(helper.make_node("Softmax", [last], ["probabilities"], axis=1))
    graph = helper.make_graph(
        nodes,
        variant,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def appliance(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


class Packages:
    """Signed packages of the variants, built with ``appliance package build``."""

    def __init__(self, root: Path):
        self.root = root
        result = appliance("keys", "generate", "--out", str(root / "keys"))
        assert result.returncode == 0, result.stderr
        self.public = root / "keys" / "public.pem"
        self._built: dict[tuple[str, int], Path] = {}

    def build(self, variant: str, version: int) -> Path:
        key = (variant, version)
        if key not in self._built:
            onnx_path = classifier(self.root / variant / "model.onnx", variant)
            out = self.root / variant / f"{MODEL}-{version}.apkg"
            result = appliance(
                "package", "build", str(onnx_path), "--name", MODEL, "--version", str(version),
                "--key", str(self.root / "keys" / "private.pem"), "--out", str(out),
                "--labels", *LABELS,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            self._built[key] = out
        return self._built[key]


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Packages:
    return Packages(tmp_path_factory.mktemp("quality-packages"))


def site_rows(n: int, seed: int = 0) -> tuple[np.ndarray, list[str], list[str]]:
    """``n`` rows of the site's population: features, labels, groups."""
    x = np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)
    labels = [LABELS[int(v > 0)] for v in x[:, 1]]
    groups = ["rare" if v > RARE_CUT else "common" for v in x[:, 0]]
    return x, labels, groups


def write_eval_csv(path: Path, n: int = 600, seed: int = 0) -> Path:
    x, labels, groups = site_rows(n, seed)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["f0", "f1", "f2", "f3", "label", "group"])
        for row, label, group in zip(x, labels, groups, strict=True):
            writer.writerow([*(f"{v:.6f}" for v in row), label, group])
    return path


def quality_config(packages: Packages, workdir: Path, **model: Any) -> dict[str, Any]:
    return {
        "signing": {"trusted_keys": [str(packages.public)]},
        "lifecycle": {"audit_log": str(workdir / "audit.jsonl")},
        "models": {MODEL: model},
    }


@pytest.fixture
def gated(packages: Packages, tmp_path: Path) -> Iterator[DaemonProcess]:
    """A daemon gating ``triage`` on 600 rows of site data, accuracy, budget 0.15."""
    data = write_eval_csv(tmp_path / "site-eval.csv")
    config = quality_config(
        packages, tmp_path, eval_data=str(data), eval_metric="accuracy", eval_max_drop=0.15
    )
    with DaemonProcess(tmp_path, config) as daemon:
        yield daemon


def cli(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``appliance ARGS --admin SOCKET``, as an operator runs it."""
    return appliance(*args, "--admin", str(daemon.workdir / "admin.sock"))
