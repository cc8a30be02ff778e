"""The gate's numpy metrics agree with scikit-learn's on the same predictions, and the
evaluation data reader refuses what it cannot score with a message naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from appliance.errors import ConfigError
from appliance.quality import OVERALL, compare, read_eval_data, score
from appliance.quality.evaluation import accuracy, auroc, macro_f1


@pytest.mark.parametrize("classes", [2, 3])
def test_metrics_match_scikit_learn(classes: int) -> None:
    rng = np.random.default_rng(classes)
    labels = rng.integers(0, classes, size=500)
    scores = rng.random((500, classes)) + np.eye(classes)[labels] * 0.3
    scores = np.round(scores, 2)  # ties, which the AUC counts half
    predicted = scores.argmax(axis=1)
    probabilities = scores / scores.sum(axis=1, keepdims=True)

    assert accuracy(labels, scores) == pytest.approx(accuracy_score(labels, predicted))
    assert macro_f1(labels, scores) == pytest.approx(f1_score(labels, predicted, average="macro"))
    expected = (
        roc_auc_score(labels, scores[:, 1])
        if classes == 2
        else roc_auc_score(labels, probabilities, multi_class="ovr", average="macro")
    )
    got = auroc(labels, scores if classes == 2 else probabilities)
    assert got == pytest.approx(expected)


def test_scores_per_group_and_the_gate_rule(tmp_path: Path) -> None:
    path = tmp_path / "eval.csv"
    path.write_text("a,b,label,group\n1,0,yes,w1\n0,1,no,w1\n1,0,yes,w2\n0,1,yes,w2\n")
    data = read_eval_data(path, ("no", "yes"))
    right = np.array([[0.1, 0.9], [0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])
    wrong_in_w1 = np.array([[0.9, 0.1], [0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])

    before, after = score("accuracy", data, right), score("accuracy", data, wrong_in_w1)
    report = compare(
        "m", candidate_version=2, candidate=after, serving_version=1, serving=before, max_drop=0.5
    )

    assert before.overall == 1.0 and after.groups == {"w1": (2, 0.0), "w2": (2, 1.0)}
    assert [(r.group, r.drop) for r in report.rows] == [(OVERALL, 0.5), ("w1", 1.0), ("w2", 0.0)]
    assert [r.group for r in report.failing] == ["w1"] and not report.passed
    assert "group 'w1'" in report.summary()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a,b,group\n1,2,x\n", "expected a 'label' column"),
        ("a,label\n1,maybe\n", "not among the package's labels ['no', 'yes']"),
        ("a,label\nsecret-value,yes\n", "must hold numbers"),
        ("label\nyes\n", "expected feature columns"),
    ],
)
def test_unusable_eval_data_is_refused_naming_the_file(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "eval.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        read_eval_data(path, ("no", "yes"))
    assert expected in str(refused.value) and str(path) in str(refused.value)
    assert "secret-value" not in str(refused.value)  # never a value of a row


def test_embedding_metrics_match_scipy() -> None:
    from scipy.stats import pearsonr, spearmanr

    from appliance.quality.evaluation import cosine_similarity, pearson, spearman

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((200, 8)), rng.standard_normal((200, 8))
    similarity = cosine_similarity(a, b)
    labels = np.round(similarity + rng.normal(scale=0.3, size=200), 1)  # with ties

    assert similarity == pytest.approx(
        [x @ y / np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(a, b, strict=True)]
    )
    assert pearson(labels, similarity) == pytest.approx(pearsonr(labels, similarity)[0])
    assert spearman(labels, similarity) == pytest.approx(spearmanr(labels, similarity)[0])
