"""Knowledge distillation of classifiers: train a student to match a teacher on local data.

The student matches the teacher's softened logits (Hinton et al., 2015, KL at
temperature T, scaled by T^2) plus cross-entropy on hard labels when there are any. The
same function is the recovery fine-tuning after pruning, with the unpruned model as
teacher. Transformer encoders (embedding models) distil layer by layer:
``compress.passes.encoder_distill``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812  (PyTorch convention)
from torch import nn

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


__all__ = [
    "DistillConfig",
    "distill_classifier",
]
