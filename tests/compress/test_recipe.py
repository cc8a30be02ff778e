"""Recipe validation: errors name the key and what was expected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compress.errors import RecipeError
from compress.recipe import load_recipe, parse_recipe


def _recipe(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "bc",
        "task": "classification",
        "source": {
            "module": "compress.models:TabularMLP",
            "kwargs": {"in_features": 30, "num_classes": 2},
        },
        "data": {"eval": {"path": "eval.csv"}},
    }
    base.update(overrides)
    return base


def test_valid_recipe_resolves_paths(tmp_path: Path) -> None:
    recipe = parse_recipe(_recipe(), tmp_path)
    assert recipe.source.kind == "module"
    assert recipe.resolve(recipe.data.eval.path) == tmp_path / "eval.csv"
    assert recipe.steps.quantize is not None and recipe.steps.quantize.modes == ["dynamic"]


def test_missing_key_named() -> None:
    raw = _recipe()
    del raw["task"]
    with pytest.raises(RecipeError, match="task: missing key"):
        parse_recipe(raw, Path())


def test_wrong_value_names_key_and_expectation() -> None:
    with pytest.raises(RecipeError, match=r"budget\.max_drop: .*greater than or equal to 0"):
        parse_recipe(_recipe(budget={"max_drop": -1}), Path())
    with pytest.raises(RecipeError, match=r"steps\.quantize\.modes\.0: .*'dynamic' or 'static'"):
        parse_recipe(_recipe(steps={"quantize": {"modes": ["fast"]}}), Path())


def test_unknown_key_named() -> None:
    with pytest.raises(RecipeError, match=r"target\.threds: unknown key"):
        parse_recipe(_recipe(target={"threds": 2}), Path())


def test_source_needs_exactly_one_kind() -> None:
    with pytest.raises(RecipeError, match="exactly one of module, huggingface, onnx"):
        parse_recipe(_recipe(source={"module": "a.b:c", "onnx": "m.onnx"}), Path())


def test_onnx_source_cannot_distill() -> None:
    raw = _recipe(
        source={"onnx": "m.onnx"},
        steps={"distill": {"student_kwargs": {}}},
        data={"eval": {"path": "e.csv"}, "train": {"path": "t.csv"}},
    )
    with pytest.raises(RecipeError, match="distill and prune need a PyTorch"):
        parse_recipe(raw, Path())


def test_distill_needs_train_data() -> None:
    with pytest.raises(RecipeError, match=r"data\.train: expected a data set"):
        parse_recipe(_recipe(steps={"distill": {"student_kwargs": {}}}), Path())


def test_embedding_needs_cosine_budget() -> None:
    with pytest.raises(RecipeError, match="expected 'cosine'"):
        parse_recipe(_recipe(task="embedding"), Path())


def test_bad_yaml_file(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="expected a YAML recipe"):
        load_recipe(bad)
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "missing.yaml")
