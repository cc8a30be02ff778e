"""Layer distillation of encoders: layer maps, hidden/attention/cosine losses, frozen words.

A tiny randomly initialised 4-layer BERT (the MiniLM tokenizer, offline) is the teacher;
its 2-layer student learns on a handful of clinical-style sentences in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from compress._inputs import InputAdapter, torch_mean_pool
from compress.corpus import clinical_corpus, recombined
from compress.errors import RecipeError
from compress.minilm import minilm_folder
from compress.passes.encoder_distill import (
    EncoderDistillConfig,
    check_layer_map,
    default_layer_map,
    distill_encoder,
    layer_student,
    uniform_layer_map,
)
from compress.passes.transformer import TransformerPruneConfig, prune_transformer
from compress.pipeline import run
from compress.recipe import parse_recipe


@pytest.fixture(scope="module")
def teacher() -> Any:
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=4,  # type: ignore[no-untyped-call]
        num_attention_heads=4,
        intermediate_size=64,
        attn_implementation="eager",
        initializer_range=0.2,  # layers far from identity: the student starts far off
    )
    return BertModel(config).eval()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def adapter() -> InputAdapter:
    tokenizer = AutoTokenizer.from_pretrained(  # type: ignore[no-untyped-call]
        minilm_folder(), local_files_only=True
    )
    return InputAdapter(tokenizer, 32)


@pytest.fixture(scope="module")
def texts() -> tuple[list[str], list[str]]:
    return clinical_corpus(48, 16)


def _outputs(model: Any, batch: dict[str, torch.Tensor]) -> Any:
    with torch.no_grad():
        return model(**batch, output_hidden_states=True, output_attentions=True)


def _cosine(teacher: Any, student: Any, batch: dict[str, torch.Tensor]) -> float:
    mask = batch["attention_mask"]
    t = torch_mean_pool(_outputs(teacher, batch).last_hidden_state, mask)
    s = torch_mean_pool(_outputs(student, batch).last_hidden_state, mask)
    return float((t * s).sum(-1).mean())


def _attention_kl(teacher: Any, student: Any, batch: dict[str, torch.Tensor]) -> float:
    """KL(teacher layer 4 || student layer 2) on the first sentence's real tokens."""
    real = int(batch["attention_mask"][0].sum())
    t = _outputs(teacher, batch).attentions[3][0, :, :real, :real]
    s = _outputs(student, batch).attentions[1][0, :, :real, :real]
    return float((t * (t.log() - s.log())).sum(-1).mean())


def test_layer_maps() -> None:
    assert default_layer_map([0, 2, 4, 5], 6) == (1, 3, 5, 6)
    assert default_layer_map([0, 1], 6) == (1, 6)  # the last layer always matches the output
    assert uniform_layer_map(2, 6) == (3, 6)
    assert uniform_layer_map(6, 6) == (1, 2, 3, 4, 5, 6)
    with pytest.raises(ValueError, match="one teacher layer per student layer"):
        check_layer_map([1, 2, 3], 2, 6)
    with pytest.raises(ValueError, match=r"teacher layers in 1\.\.6"):
        check_layer_map([0, 6], 2, 6)


def test_student_learns_hidden_states_attention_and_embedding(
    teacher: Any, adapter: InputAdapter, texts: tuple[list[str], list[str]]
) -> None:
    train, held_out = texts
    student: Any = layer_student(teacher, [0, 1])
    batch = adapter.tensors(held_out)
    before = _cosine(teacher, student, batch), _attention_kl(teacher, student, batch)
    config = EncoderDistillConfig(
        epochs=8, lr=3e-3, batch_size=8, layer_map=(2, 4), attention_weight=1.0
    )
    trained: Any = distill_encoder(teacher, student, train, adapter, config)
    after = _cosine(teacher, trained, batch), _attention_kl(teacher, trained, batch)
    assert after[0] > max(0.9, before[0] + 0.3)  # the teacher's embeddings, on unseen text
    assert after[1] < before[1] / 2  # and attention close to the mapped layer's
    # Frozen by default: the words the text never uses keep the teacher's vectors.
    torch.testing.assert_close(
        trained.embeddings.word_embeddings.weight, teacher.embeddings.word_embeddings.weight
    )
    assert not torch.equal(
        trained.encoder.layer[0].output.dense.weight, student.encoder.layer[0].output.dense.weight
    )


def test_embeddings_train_when_not_frozen(
    teacher: Any, adapter: InputAdapter, texts: tuple[list[str], list[str]]
) -> None:
    student = layer_student(teacher, [0, 3])
    config = EncoderDistillConfig(epochs=1, batch_size=16, freeze_embeddings=False)
    trained: Any = distill_encoder(teacher, student, texts[0], adapter, config)
    assert not torch.equal(
        trained.embeddings.word_embeddings.weight, teacher.embeddings.word_embeddings.weight
    )


def test_dropout_is_off_while_the_student_learns(
    teacher: Any, adapter: InputAdapter, texts: tuple[list[str], list[str]]
) -> None:
    """Without dropout noise the student gets closer to the (deterministic) teacher."""
    train = texts[0]
    student: Any = layer_student(teacher, [0, 2])
    noisy = [m for m in student.modules() if isinstance(m, torch.nn.Dropout)]
    for module in noisy:
        module.p = 0.5
    batch = adapter.tensors(train)
    cosines = {}
    for dropout in (False, True):
        config = EncoderDistillConfig(epochs=6, lr=3e-3, batch_size=8, dropout=dropout)
        trained: Any = distill_encoder(teacher, student, train, adapter, config)
        cosines[dropout] = _cosine(teacher, trained, batch)
        # The returned model keeps its own dropout settings.
        kept = [m.p for m in trained.modules() if isinstance(m, torch.nn.Dropout)]
        assert kept == [0.5] * len(noisy)
    assert cosines[False] > cosines[True] + 0.005, cosines  # measured 0.966 against 0.952


def test_attention_loss_needs_the_teachers_heads(
    teacher: Any, adapter: InputAdapter, texts: tuple[list[str], list[str]]
) -> None:
    pruned = prune_transformer(teacher, TransformerPruneConfig(heads=0.5))
    config = EncoderDistillConfig(epochs=1, attention_weight=1.0)
    with pytest.raises(ValueError, match="head count"):
        distill_encoder(teacher, pruned, texts[0], adapter, config)


def test_recombined_text_reuses_training_sentences_only() -> None:
    train, evaluation = clinical_corpus(40, 10)
    extra = recombined(train, 30, seed=1)
    assert len(extra) == 30 and len(set(extra)) > 25
    words = {w.strip(".,;:").lower() for s in train for w in s.split()}
    assert all(w.strip(".,;:").lower() in words for s in extra for w in s.split())
    assert not set(extra) & set(evaluation)


def test_recipe_layer_map_is_checked(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    folder = tmp_path / "teacher"
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=3,  # type: ignore[no-untyped-call]
        num_attention_heads=4,
        intermediate_size=64,
    )
    BertModel(config).save_pretrained(folder)  # type: ignore[no-untyped-call]
    AutoTokenizer.from_pretrained(  # type: ignore[no-untyped-call]
        minilm_folder(), local_files_only=True
    ).save_pretrained(folder)
    train, evaluation = clinical_corpus(16, 4)
    (folder / "train.txt").write_text("\n".join(train) + "\n")
    (folder / "eval.txt").write_text("\n".join(evaluation) + "\n")
    raw = {
        "name": "tiny-embedder",
        "task": "embedding",
        "source": {"huggingface": "."},
        "data": {
            "train": {"path": "train.txt", "label": None},
            "eval": {"path": "eval.txt", "label": None},
        },
        "steps": {
            "distill": {"layers": [0, 2], "layer_map": [1, 2, 3], "epochs": 1},
            "quantize": None,
        },
        "target": {"seq_length": 16, "latency_runs": 2, "throughput_batch": 4},
        "budget": {"metric": "cosine", "max_drop": None, "min_value": 0.0},
        "package": {"key": str(keys[0])},
    }
    with pytest.raises(RecipeError, match=r"steps\.distill\.layer_map: expected one teacher"):
        run(parse_recipe(raw, folder), tmp_path / "out", show_progress=False)
