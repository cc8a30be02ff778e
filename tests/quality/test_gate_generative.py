"""The site evaluation gate for a generative model on a real daemon: tiny Llamas built to
onnxruntime-genai packages, pushed and activated with the admin CLI, their greedy
answers scored with token F1 against the site's reference answers.

The references are the trained model's own greedy answers (onnxruntime-genai in this
process), so the trained model scores 1.0 and a random-weights model of the same shape,
whose self-test passes too, scores far lower and is refused."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.quality.generation import DEFAULT_MAX_TOKENS
from compress.lm import LlamaSpec
from tests._daemon import DaemonProcess
from tests._lm import genai_model
from tests.generative.conftest import greedy
from tests.lifecycle.conftest import audit_lines, cli, cli_json
from tests.lifecycle.test_generative import MODEL, GenerativePackages

REFUSED = 3
#: Prompts of the synthetic clinical corpus's kind, two wards of three.
PROMPTS = {
    "ward-a": ("Patient reports", "History of", "The patient was"),
    "ward-b": ("Blood pressure", "No evidence of", "Plan:"),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> GenerativePackages:
    return GenerativePackages(tmp_path_factory.mktemp("gate-trained"), genai_model())


@pytest.fixture(scope="module")
def untrained(tmp_path_factory: pytest.TempPathFactory) -> GenerativePackages:
    folder = genai_model(LlamaSpec(steps=0))
    return GenerativePackages(tmp_path_factory.mktemp("gate-untrained"), folder)


@pytest.fixture(scope="module")
def references(trained: GenerativePackages) -> dict[str, str]:
    """Each prompt's reference: the trained model's greedy answer, as the gate asks it."""
    prompts = [p for group in PROMPTS.values() for p in group]
    return {p: greedy(trained.folder, p, DEFAULT_MAX_TOKENS) for p in prompts}


def write_prompts(path: Path, references: dict[str, str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["prompt", "reference", "group"])
        for group, prompts in PROMPTS.items():
            for prompt in prompts:
                writer.writerow([prompt, references[prompt], group])
    return path


def gate_config(workdir: Path, keys: list[Path], **model: Any) -> dict[str, Any]:
    return {
        "repository": {"serve_default_model": False},
        "signing": {"trusted_keys": [str(k) for k in keys]},
        "lifecycle": {"audit_log": str(workdir / "audit.jsonl")},
        "models": {MODEL: model},
    }


@pytest.fixture
def gated(
    trained: GenerativePackages,
    untrained: GenerativePackages,
    references: dict[str, str],
    tmp_path: Path,
) -> Iterator[DaemonProcess]:
    """A daemon gating ``notes`` on six prompts, token F1 (the default), budget 0.02."""
    data = write_prompts(tmp_path / "prompts.csv", references)
    keys = [trained.public, untrained.public]
    with DaemonProcess(tmp_path, gate_config(tmp_path, keys, eval_data=str(data))) as daemon:
        yield daemon


def loaded_versions(daemon: DaemonProcess) -> list[str]:
    (listing,) = cli_json(daemon, "models", "list", MODEL)
    return [v["version"] for v in listing["versions"] if v["loaded"]]


def test_a_worse_generative_model_is_refused_and_an_equal_one_passes(
    gated: DaemonProcess,
    trained: GenerativePackages,
    untrained: GenerativePackages,
    references: dict[str, str],
) -> None:
    assert cli_json(gated, "models", "push", str(trained.build(1)), "--activate")["activated"]
    installed = cli(gated, "models", "push", str(untrained.build(2)))
    assert installed.returncode == 0, installed.stderr  # verified and self-tested

    refused = cli(gated, "models", "activate", MODEL, "2")

    assert refused.returncode == REFUSED, refused.stdout + refused.stderr
    assert "token_f1 drops more than eval_max_drop = 0.02" in refused.stderr
    assert "REFUSED" in refused.stderr and "serving v1" in refused.stderr  # the table
    rows = {line.split()[0]: line for line in refused.stderr.splitlines() if line.strip()}
    assert {"(all)", "ward-a", "ward-b"} <= set(rows)
    record = [e for e in audit_lines(gated) if e["event"] == "admin.activate"][-1]
    assert record["outcome"] == "refused" and record["version"] == 2
    assert "candidate v2" in str(record["reason"])
    (listing,) = cli_json(gated, "models", "list", MODEL)
    assert listing["active_version"] == "1"
    assert loaded_versions(gated) == ["1"]  # the candidate's engine is unloaded again

    passed = cli_json(gated, "models", "push", str(trained.build(3)), "--activate")
    assert passed["activated"] is True  # the same weights: no drop at all
    push = [e for e in audit_lines(gated) if e["event"] == "admin.push"][-1]
    assert "within the budget" in str(push["evaluation"])
    # Prompts and answers are patient data: never in the log.
    log = gated.log_text()
    assert all(p not in log for group in PROMPTS.values() for p in group)
    assert all(r.strip() not in log for r in references.values() if len(r.strip()) > 8)


def test_models_evaluate_shows_token_f1_overall_and_per_group(
    gated: DaemonProcess, trained: GenerativePackages, untrained: GenerativePackages
) -> None:
    assert cli_json(gated, "models", "push", str(trained.build(1)), "--activate")["activated"]
    assert cli(gated, "models", "push", str(untrained.build(2))).returncode == 0

    table = cli_json(gated, "models", "evaluate", MODEL, "2")
    alone = cli_json(gated, "models", "evaluate", MODEL)
    text = cli(gated, "models", "evaluate", MODEL, "2")

    assert table["metric"] == "token_f1" and table["passed"] is False
    assert table["version"] == "2" and table["serving_version"] == "1"
    by_group = {row["group"]: row for row in table["rows"]}
    assert set(by_group) == {"(all)", "ward-a", "ward-b"}
    assert by_group["(all)"]["serving"] == 1.0  # the references are its own answers
    assert by_group["(all)"]["candidate"] < 0.5
    assert [int(by_group[g]["rows"]) for g in ("(all)", "ward-a", "ward-b")] == [6, 3, 3]
    assert alone["serving_version"] == "0" and alone["rows"][0]["candidate"] == 1.0
    assert text.returncode == 0, text.stderr
    assert [line.split()[0] for line in text.stdout.splitlines()[2:]] == [
        "(all)",
        "ward-a",
        "ward-b",
    ]
    assert loaded_versions(gated) == ["1"]  # loaded for the evaluation, unloaded after


def test_a_classifier_metric_for_a_generative_model_is_refused_and_says_why(
    trained: GenerativePackages, references: dict[str, str], tmp_path: Path
) -> None:
    data = write_prompts(tmp_path / "prompts.csv", references)
    config = gate_config(tmp_path, [trained.public], eval_data=str(data), eval_metric="accuracy")
    with DaemonProcess(tmp_path, config) as daemon:
        refused = cli(daemon, "models", "push", str(trained.build(1)), "--activate")

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "eval_metric 'accuracy' does not score a generative model" in refused.stderr
    assert "['exact_match', 'token_f1']" in refused.stderr
