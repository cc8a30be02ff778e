"""Hugging Face embedding path: Optimum export, layer distillation, head/FFN pruning, int8.

A tiny randomly initialised BERT with the MiniLM tokenizer (offline) keeps this fast;
the real MiniLM run is the benchmark.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from appliance.package import verify_package
from compress.minilm import minilm_folder
from compress.pipeline import run
from compress.recipe import parse_recipe

_SENTENCES = [
    "Patient reports chest pain on exertion.",
    "No evidence of fracture on X-ray.",
    "Started on metformin 500 mg twice daily.",
    "Follow-up in cardiology in two weeks.",
    "Creatinine mildly raised since admission.",
    "Denies fever, cough or rash.",
    "Wound on the left forearm is clean and dry.",
    "CT scan of the chest is unremarkable.",
]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=3,  # type: ignore[no-untyped-call]
        num_attention_heads=4,
        intermediate_size=64,
    )
    BertModel(config).save_pretrained(folder)  # type: ignore[no-untyped-call]
    tokenizer = AutoTokenizer.from_pretrained(  # type: ignore[no-untyped-call]
        minilm_folder(), local_files_only=True
    )
    tokenizer.save_pretrained(folder)
    (folder / "train.txt").write_text("\n".join(_SENTENCES * 4) + "\n")
    (folder / "eval.txt").write_text("\n".join(reversed(_SENTENCES)) + "\n")
    return folder


def test_embedding_pipeline(tiny_bert: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    raw = {
        "name": "tiny-embedder",
        "task": "embedding",
        "source": {"huggingface": "."},
        "data": {
            "train": {"path": "train.txt", "label": None},
            "eval": {"path": "eval.txt", "label": None},
        },
        "steps": {
            "distill": {
                "layers": [0, 2],
                "layer_map": [1, 3],
                "attention_weight": 0.5,
                "epochs": 2,
                "lr": 1e-3,
                "batch_size": 8,
            },
            "prune": {"structured": 0.5, "heads": 0.5, "finetune_epochs": 1},
            "quantize": {"modes": ["dynamic"], "fallback_max_layers": 0},
        },
        "target": {"seq_length": 16, "latency_runs": 2, "throughput_batch": 4},
        "budget": {"metric": "cosine", "max_drop": None, "min_value": 0.0},
        "package": {"key": str(keys[0]), "golden_cases": 2},
    }
    result = run(parse_recipe(raw, tiny_bert), tmp_path / "out", show_progress=False)
    names = [v.name for v in result.search.variants]
    assert names[:2] == ["baseline-fp32", "baseline-int8-dyn-pc"]
    assert "distilled-fp32" in names and "pruned-int8-dyn-pc" in names
    assert result.search.baseline.metrics.scores["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert result.package is not None
    manifest = verify_package(result.package, [keys[1]])
    assert [s.name for s in manifest.inputs][:2] == ["input_ids", "attention_mask"]
    assert manifest.task == "embedding"
    assert manifest.reference_profile is not None
    assert manifest.reference_profile["inputs"]["input_ids"]["kind"] == "summary"
    # The box tokenizes and pools as the evaluation did: the tokenizer ships, signed.
    assert manifest.embedding is not None and manifest.embedding.pooling == "mean"
    with tarfile.open(result.package) as tar:
        assert "tokenizer.json" in tar.getnames()
