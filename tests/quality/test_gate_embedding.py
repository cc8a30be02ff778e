"""The site evaluation gate for an embedding model: text pairs with a similarity label,
scored by the Spearman correlation of the pairs' cosine similarity with the label."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from tests._daemon import DaemonProcess
from tests.models import ENCODER_WORDS, encoder_model, encoder_reference
from tests.quality.conftest import appliance, cli

NAME = "notes_encoder"


def package(root: Path, seed: int, version: int) -> Path:
    folder = encoder_model(root / f"seed-{seed}", seed=seed).parent
    golden = folder / "golden.npz"  # token ids within the tiny vocabulary
    ids = np.array([[2, 5, 6, 3], [2, 7, 8, 3]], dtype=np.int64)
    np.savez(golden, input_ids=ids, attention_mask=np.ones_like(ids), token_type_ids=0 * ids)
    out = root / f"{NAME}-{version}.apkg"
    result = appliance(
        "package", "build", str(folder / "model.onnx"), "--golden", str(golden), "--name", NAME,
        "--version", str(version), "--key", str(root / "keys" / "private.pem"),
        "--out", str(out), "--task", "embedding", "--include", str(folder / "tokenizer.json"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


def pairs_csv(path: Path, rows: int = 120) -> Path:
    """Pairs of word strings, labelled with the similarity the seed-7 encoder gives them."""
    rng = np.random.default_rng(1)
    words = list(ENCODER_WORDS)
    texts = [" ".join(rng.choice(words, size=rng.integers(2, 6))) for _ in range(2 * rows)]
    a, b = encoder_reference(texts[:rows]), encoder_reference(texts[rows:])
    similarity = np.sum(a * b, axis=1)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["text_a", "text_b", "label", "group"])
        for i in range(rows):
            group = "discharge" if i % 3 else "radiology"
            writer.writerow([texts[i], texts[rows + i], f"{similarity[i]:.6f}", group])
    return path


def test_an_embedding_model_that_ranks_pairs_worse_is_refused(tmp_path: Path) -> None:
    assert appliance("keys", "generate", "--out", str(tmp_path / "keys")).returncode == 0
    config = {
        "signing": {"trusted_keys": [str(tmp_path / "keys" / "public.pem")]},
        "lifecycle": {"audit_log": str(tmp_path / "audit.jsonl")},
        "models": {
            NAME: {"eval_data": str(pairs_csv(tmp_path / "pairs.csv")), "eval_max_drop": 0.05}
        },
    }
    with DaemonProcess(tmp_path, config) as daemon:
        first = cli(daemon, "models", "push", str(package(tmp_path, 7, 1)), "--activate")
        worse = cli(daemon, "models", "push", str(package(tmp_path, 99, 2)), "--activate")
        same = cli(daemon, "models", "push", str(package(tmp_path, 7, 3)), "--activate")
        table = json.loads(cli(daemon, "models", "evaluate", NAME, "--json").stdout)

    assert first.returncode == 0, first.stderr
    assert worse.returncode == 3, worse.stdout + worse.stderr
    assert "spearman drops more than eval_max_drop = 0.05" in worse.stderr
    assert same.returncode == 0, same.stderr  # as good as the serving version
    assert table["metric"] == "spearman" and table["version"] == "3"
    by_group = {row["group"]: row for row in table["rows"]}
    assert set(by_group) == {"(all)", "discharge", "radiology"}
    assert by_group["(all)"]["candidate"] > 0.999  # the labels are its own similarities
