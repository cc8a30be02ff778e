"""PyTorch passes: distillation, magnitude and structured pruning (MLP, CNN, BERT)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import BertConfig, BertModel

from compress._inputs import InputAdapter
from compress.models import SmallCNN, TabularMLP
from compress.passes.channels import ChannelConfig, parameter_count, prune_channels
from compress.passes.distill import DistillConfig, distill_classifier
from compress.passes.encoder_distill import layer_student
from compress.passes.magnitude import MagnitudeConfig, magnitude_prune, sparsity
from compress.passes.transformer import TransformerPruneConfig, prune_transformer
from tests.compress.conftest import Task, accuracy


def test_distill_small_student_learns(tabular: Task) -> None:
    student = TabularMLP(30, 2, hidden=(8,))
    student.set_standardization(tabular.model.mean, tabular.model.std)  # type: ignore[arg-type]
    trained = distill_classifier(
        tabular.model, student, tabular.x_test, tabular.y_test, DistillConfig(epochs=30, seed=0)
    )
    assert accuracy(trained, tabular.x_test, tabular.y_test) > 0.9
    assert parameter_count(trained) < parameter_count(tabular.model) / 3


def test_magnitude_prune_zeros_weights(tabular: Task) -> None:
    pruned = magnitude_prune(tabular.model, MagnitudeConfig(0.5))
    assert 0.49 <= sparsity(pruned) <= 0.51
    assert sparsity(tabular.model) < 0.01  # the original is untouched


def test_channels_removed_from_mlp(tabular: Task) -> None:
    pruned = prune_channels(tabular.model, ChannelConfig(0.5))
    linears = [m for m in pruned.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [32, 16, 2]
    assert pruned(torch.from_numpy(tabular.x_test)).shape == (len(tabular.x_test), 2)


def test_channels_removed_from_cnn(digits: Task) -> None:
    pruned = prune_channels(digits.model, ChannelConfig(0.5))
    convs = [m for m in pruned.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 8, 8]
    assert isinstance(pruned, SmallCNN) and pruned.head.in_features == 8
    assert pruned(torch.from_numpy(digits.x_test[:5])).shape == (5, 10)
    assert parameter_count(pruned) < parameter_count(digits.model) / 2.5


def _tiny_bert() -> Any:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=3,  # type: ignore[no-untyped-call]
        num_attention_heads=4,
        intermediate_size=64,
    )
    return BertModel(config).eval()  # type: ignore[no-untyped-call]


def test_transformer_heads_and_ffn_removed() -> None:
    model = _tiny_bert()
    pruned: Any = prune_transformer(model, TransformerPruneConfig(ffn=0.5, heads=0.5))
    layer = pruned.encoder.layer[0]
    assert layer.intermediate.dense.out_features == 32
    assert layer.attention.self.num_attention_heads == 2
    assert layer.attention.self.query.out_features == 16
    ids = torch.randint(0, 100, (2, 7))
    assert pruned(input_ids=ids).last_hidden_state.shape == (2, 7, 32)


def test_layer_student_keeps_chosen_layers() -> None:
    model = _tiny_bert()
    student: Any = layer_student(model, [0, 2])
    assert len(student.encoder.layer) == 2
    torch.testing.assert_close(
        student.encoder.layer[1].output.dense.weight, model.encoder.layer[2].output.dense.weight
    )


def test_input_adapter_arrays() -> None:
    arrays = InputAdapter().arrays(np.zeros((2, 3)))
    assert arrays["input"].dtype == np.float32
