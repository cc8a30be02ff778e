"""The final model's files, and the handoff recipe that turns them into a package."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from compress.models import TabularMLP
from compress.recipe import load_recipe
from federated._training import build_model
from federated.export import export_final_model
from federated.settings import ModelKind, RunSettings

APP_DIR = Path(__file__).resolve().parents[2] / "federated"


def test_export_writes_onnx_weights_and_spec(tmp_path: Path) -> None:
    settings = RunSettings()
    model = build_model(settings)
    onnx_path = export_final_model(model, settings, tmp_path / "out")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    x = np.random.default_rng(0).normal(size=(7, 30)).astype(np.float32)
    (logits,) = session.run(None, {"input": x})
    np.testing.assert_allclose(logits, model(torch.from_numpy(x)).detach().numpy(), atol=1e-5)
    spec = json.loads((tmp_path / "out" / "final_model.json").read_text())
    assert spec["model"] == "tabular-mlp" and spec["input_shape"] == [30]


def test_cnn_exports_with_a_dynamic_batch(tmp_path: Path) -> None:
    settings = RunSettings(model=ModelKind.SMALL_CNN, input_shape=(1, 8, 8), labels=tuple("0123"))
    onnx_path = export_final_model(build_model(settings), settings, tmp_path)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": np.zeros((3, 1, 8, 8), np.float32)})
    assert logits.shape == (3, 4)


def test_handoff_recipe_matches_the_app_defaults_and_loads_the_weights(tmp_path: Path) -> None:
    settings = RunSettings()
    export_final_model(build_model(settings), settings, tmp_path)
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text((APP_DIR / "handoff-recipe.yaml").read_text())
    recipe = load_recipe(recipe_path)
    app_config = tomllib.loads((APP_DIR / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    assert recipe.labels == app_config["config"]["labels"].split(",")
    assert recipe.source.module == "compress.models:TabularMLP"
    assert recipe.source.weights is not None
    weights = torch.load(recipe.resolve(recipe.source.weights), weights_only=True)
    TabularMLP(**recipe.source.kwargs).load_state_dict(weights)
