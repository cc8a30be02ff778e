"""How a shadow compares two answers: the top class of a classifier, else the cosine of
each row's outputs (equality for integers)."""

from __future__ import annotations

import numpy as np

from appliance.model import ModelSpec
from appliance.package.manifest import TensorSpec
from appliance.routing import agreement


def spec(*outputs: TensorSpec, batched: bool = True) -> ModelSpec:
    x = TensorSpec(name="x", datatype="FP32", shape=(-1, 4))
    return ModelSpec("m", 1, (x,), outputs, max_batch_size=8 if batched else 0)


EMBEDDING = TensorSpec(name="embedding", datatype="FP32", shape=(-1, 3))
LABEL = TensorSpec(name="label", datatype="INT64", shape=(-1,))


def test_classifiers_agree_on_the_top_class_whatever_the_probabilities() -> None:
    scores = TensorSpec(name="probabilities", datatype="FP32", shape=(-1, 2))
    ours = {"probabilities": np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]])}
    theirs = {"probabilities": np.array([[0.55, 0.45], [0.6, 0.4], [0.51, 0.49]])}
    assert agreement(spec(scores), ours, theirs) == (2, 3)


def test_other_outputs_agree_within_a_cosine() -> None:
    ours = {"embedding": np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)}
    close = np.array([[0.999, 0.02, 0.0], [0.0, 2.0, 0.0]], dtype=np.float32)  # scale ignored
    far = np.array([[0.9, 0.3, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    assert agreement(spec(EMBEDDING), ours, {"embedding": close}) == (2, 2)
    assert agreement(spec(EMBEDDING), ours, {"embedding": far}) == (0, 2)


def test_every_output_of_a_row_must_agree_and_integers_exactly() -> None:
    ours = {"embedding": np.eye(3, dtype=np.float32)[:2], "label": np.array([1, 2])}
    theirs = {"embedding": np.eye(3, dtype=np.float32)[:2], "label": np.array([1, 3])}
    assert agreement(spec(EMBEDDING, LABEL), ours, theirs) == (1, 2)


def test_an_answer_of_another_shape_agrees_nowhere() -> None:
    ours = {"embedding": np.ones((2, 3), dtype=np.float32)}
    assert agreement(spec(EMBEDDING), ours, {"embedding": np.ones((2, 4))}) == (0, 2)
    assert agreement(spec(EMBEDDING), ours, {}) == (0, 2)
    # An unbatched model's answer is one row.
    assert agreement(spec(EMBEDDING, batched=False), ours, dict(ours)) == (1, 1)
