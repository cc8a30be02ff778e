"""Calibrating a cascade's threshold: the lowest threshold within the budget of the large
model, the curve around it, and the command an operator runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.cli import main
from compress.cascade import calibrate
from compress.errors import DataError
from tests.models import classifier_model


def two_class(p_first: list[float]) -> np.ndarray:
    p = np.array(p_first)
    return np.stack([p, 1 - p], axis=1)


def test_the_lowest_threshold_within_the_budget_is_chosen() -> None:
    labels = np.array([0, 0, 1, 1, 0])
    large = two_class([0.9, 0.8, 0.2, 0.1, 0.7])  # right on every row
    # Small: right and sure on rows 0-2, wrong on row 3 at 0.6, wrong on row 4 at 0.55.
    small = two_class([0.99, 0.95, 0.1, 0.6, 0.45])
    strict = calibrate(small, large, labels, max_drop=0.0)
    assert strict.large_accuracy == 1.0 and strict.small_accuracy == pytest.approx(0.6)
    assert strict.chosen is not None
    assert strict.chosen.threshold == pytest.approx(0.9)  # above both wrong rows
    assert (strict.chosen.small_share, strict.chosen.accuracy) == (pytest.approx(0.6), 1.0)
    # A budget of one row in five lets the row at 0.6 go to the small model.
    loose = calibrate(small, large, labels, max_drop=0.2)
    assert loose.chosen is not None and loose.chosen.threshold == pytest.approx(0.6)
    assert loose.chosen.small_share == pytest.approx(0.8)
    assert strict.chosen in strict.curve
    assert "(chosen)" in strict.markdown()


def test_luck_on_the_labels_buys_no_rows() -> None:
    """The small model is right where the large one is wrong: accuracy alone would send
    that row to it, but the cascade must also agree with the large model."""
    labels = np.array([0, 0, 1, 1])
    large = two_class([0.9, 0.8, 0.2, 0.6])  # wrong on row 3
    small = two_class([0.99, 0.95, 0.05, 0.3])  # right everywhere; row 3 at 0.7
    result = calibrate(small, large, labels, max_drop=0.0)
    assert result.chosen is not None
    assert result.chosen.threshold == pytest.approx(0.95)  # row 3 (0.7) stays with the large
    assert (result.chosen.small_share, result.chosen.agreement) == (0.75, 1.0)


def test_logits_are_refused() -> None:
    with pytest.raises(DataError, match="not probabilities"):
        calibrate(np.array([[2.0, 1.0]]), np.array([[0.5, 0.5]]), np.array([0]))


def test_the_command_prints_the_curve_and_the_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2)).astype(np.float32)
    labels = (x[:, 1] > x[:, 0]).astype(int)
    small = classifier_model(tmp_path / "small.onnx", np.array([[1.0, 0.0], [0.0, 1.0]]))
    large = classifier_model(tmp_path / "large.onnx", np.array([[8.0, 0.0], [0.0, 8.0]]))
    table = tmp_path / "eval.csv"
    lines = ["a,b,label", *(f"{a},{b},{y}" for (a, b), y in zip(x, labels, strict=True))]
    table.write_text("\n".join(lines) + "\n")
    code = main(["compress", "--cascade", str(small), str(large), "--eval-data", str(table)])
    out = capsys.readouterr().out
    assert code == 0
    assert "| min_confidence | answered by small |" in out
    # Both rank rows alike: every threshold keeps the large model's accuracy.
    assert "min_confidence = 0.5" in out and "100.0% of the rows answered by small.onnx" in out
