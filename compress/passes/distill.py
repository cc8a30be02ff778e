"""Knowledge distillation: train a student to match a teacher on local data.

Two losses, one per task: classifiers match the teacher's softened logits (Hinton et
al., 2015, KL at temperature T, scaled by T^2) plus cross-entropy on hard labels when
there are any; embedding models match the teacher's pooled sentence embedding (cosine)
and its last hidden states (MSE over real tokens). The same function is the recovery
fine-tuning after pruning, with the unpruned model as teacher.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812  (PyTorch convention)
from torch import nn

from compress._inputs import InputAdapter, torch_mean_pool

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class DistillConfig:
    epochs: int = 20
    lr: float = 3e-3
    batch_size: int = 64
    temperature: float = 2.0
    alpha: float = 0.3  # weight of the hard-label loss; 1 - alpha goes to the teacher
    seed: int = 0


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _classifier_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    config: DistillConfig,
) -> torch.Tensor:
    t = config.temperature
    soft = (
        F.kl_div(
            F.log_softmax(student_logits / t, -1),
            F.softmax(teacher_logits / t, -1),
            reduction="batchmean",
        )
        * t
        * t
    )
    if labels is None:
        return soft
    hard = F.cross_entropy(student_logits, labels)
    return config.alpha * hard + (1 - config.alpha) * soft


def distill_classifier(
    teacher: nn.Module,
    student: nn.Module,
    x: np.ndarray,
    y: np.ndarray | None,
    config: DistillConfig,
    *,
    progress: Progress | None = None,
) -> nn.Module:
    """Train a copy of ``student`` on array inputs ``x`` (labels ``y`` optional)."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    student = copy.deepcopy(student).train()
    teacher = teacher.eval()
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr)
    inputs = torch.tensor(np.asarray(x, dtype=np.float32))
    labels = None if y is None else torch.tensor(np.asarray(y, dtype=np.int64))
    with torch.no_grad():
        targets = teacher(inputs)  # (n, classes)
    for epoch in range(config.epochs):
        for idx in _batches(len(inputs), config.batch_size, rng):
            index = torch.from_numpy(idx)
            loss = _classifier_loss(
                student(inputs[index]),
                targets[index],
                None if labels is None else labels[index],
                config,
            )
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
        if progress is not None:
            progress(epoch + 1, config.epochs)
    return student.eval()


def _hidden(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(**batch)
    return out.last_hidden_state  # type: ignore[no-any-return]  # (batch, seq, dim)


def distill_embeddings(
    teacher: nn.Module,
    student: nn.Module,
    texts: list[str],
    adapter: InputAdapter,
    config: DistillConfig,
    *,
    progress: Progress | None = None,
) -> nn.Module:
    """Train a copy of ``student`` (a transformer encoder) to reproduce ``teacher``'s
    sentence embeddings and last hidden states on ``texts`` (no labels needed)."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    student = copy.deepcopy(student).train()
    teacher = teacher.eval()
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr)
    steps = config.epochs * -(-len(texts) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=steps, pct_start=0.1
    )
    for epoch in range(config.epochs):
        for idx in _batches(len(texts), config.batch_size, rng):
            batch = adapter.tensors([texts[i] for i in idx])
            mask = batch["attention_mask"]  # (batch, seq)
            with torch.no_grad():
                t_hidden = _hidden(teacher, batch)
            s_hidden = _hidden(student, batch)
            cosine = (torch_mean_pool(s_hidden, mask) * torch_mean_pool(t_hidden, mask)).sum(-1)
            token_mse = ((s_hidden - t_hidden) ** 2).mean(-1)  # (batch, seq)
            mse = (token_mse * mask).sum() / mask.sum()
            loss = (1 - cosine).mean() * 10 + mse  # cosine dominates: it is the metric
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
        if progress is not None:
            progress(epoch + 1, config.epochs)
    return student.eval()


def layer_student(teacher: nn.Module, layers: list[int]) -> nn.Module:
    """A shallower copy of a BERT-style encoder keeping ``layers`` (initialised from them)."""
    encoder = getattr(getattr(teacher, "encoder", None), "layer", None)
    if not isinstance(encoder, nn.ModuleList):
        raise TypeError("expected a BERT-style model with encoder.layer")
    if not layers or any(i < 0 or i >= len(encoder) for i in layers):
        raise ValueError(f"expected layer indices in 0..{len(encoder) - 1}, got {layers}")
    student = copy.deepcopy(teacher)
    student.encoder.layer = nn.ModuleList(  # type: ignore[union-attr]
        [copy.deepcopy(encoder[i]) for i in layers]
    )
    student.config.num_hidden_layers = len(layers)  # type: ignore[union-attr]
    return student


__all__ = [
    "DistillConfig",
    "distill_classifier",
    "distill_embeddings",
    "layer_student",
]
