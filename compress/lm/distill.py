"""Layer-dropping distillation of a causal LM on local text.

The student keeps the teacher's chosen decoder layers (weights copied, in order) with the
same embeddings, norm and head. It then trains on the site's text against the teacher:
KL divergence of temperature-softened next-token distributions plus the mean-squared
error between each student layer's hidden state and that of the teacher layer it was
copied from (the layer map).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from compress.errors import RecipeError

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class LmDistillConfig:
    layers: tuple[int, ...]
    steps: int = 200
    lr: float = 5e-4
    batch_size: int = 8
    temperature: float = 2.0
    hidden_weight: float = 1.0
    seed: int = 0


def layer_student(teacher: Any, layers: tuple[int, ...]) -> Any:
    """A copy of ``teacher`` with only ``layers`` (teacher indices, kept in order)."""
    from torch import nn

    count = teacher.config.num_hidden_layers
    if sorted(set(layers)) != list(layers) or not all(0 <= i < count for i in layers):
        raise RecipeError(
            f"steps.distill.layers: expected increasing indices in 0..{count - 1}, got {layers}"
        )
    student = copy.deepcopy(teacher)
    student.model.layers = nn.ModuleList(copy.deepcopy(teacher.model.layers[i]) for i in layers)
    for index, layer in enumerate(student.model.layers):
        layer.self_attn.layer_idx = index
    student.config.num_hidden_layers = len(layers)
    if getattr(student.config, "layer_types", None):
        student.config.layer_types = [student.config.layer_types[i] for i in layers]
    return student


def train_on_teacher(
    teacher: Any,
    student: Any,
    rows: np.ndarray,
    config: LmDistillConfig,
    *,
    layer_map: tuple[int, ...] | None = None,
    progress: Progress | None = None,
) -> Any:
    """Train ``student`` on ``rows`` (token ids) to match ``teacher``; ``layer_map[i]`` is
    the teacher layer whose output student layer ``i`` matches (None: logits only)."""
    import torch
    from torch.nn import functional

    data = torch.from_numpy(rows)
    generator = torch.Generator().manual_seed(config.seed)
    optimiser = torch.optim.AdamW(student.parameters(), lr=config.lr)
    teacher.eval()
    student.train()
    t = config.temperature
    for step in range(config.steps):
        batch = data[torch.randint(0, len(data), (config.batch_size,), generator=generator)]
        with torch.no_grad():
            target = teacher(input_ids=batch, output_hidden_states=layer_map is not None)
        out = student(input_ids=batch, output_hidden_states=layer_map is not None)
        loss = functional.kl_div(
            functional.log_softmax(out.logits / t, dim=-1),
            functional.log_softmax(target.logits / t, dim=-1),
            log_target=True,
            reduction="batchmean",
        ) * (t * t / batch.shape[1])
        if layer_map is not None and config.hidden_weight:
            # hidden_states[k + 1] is the output of layer k (index 0 is the embeddings).
            pairs = [
                (out.hidden_states[i + 1], target.hidden_states[j + 1])
                for i, j in enumerate(layer_map)
            ]
            loss = loss + config.hidden_weight * sum(
                functional.mse_loss(s, x) for s, x in pairs
            ) / len(pairs)
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        if progress is not None:
            progress(step + 1, config.steps)
    student.eval()
    return student


__all__ = ["LmDistillConfig", "layer_student", "train_on_teacher"]
