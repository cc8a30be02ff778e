"""Unstructured magnitude pruning: zero the smallest weights of every Linear/Conv layer.

Shapes stay the same, so this alone makes a model neither smaller on disk (ONNX stores
dense tensors) nor faster on CPU kernels; it is offered because it composes with int8
(more zeros quantize exactly) and as the baseline that structured pruning is compared
with. Per-layer L1 criterion (Han et al., 2015).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class MagnitudeConfig:
    amount: float  # fraction of each layer's weights set to zero, in [0, 1)


def magnitude_prune(model: nn.Module, config: MagnitudeConfig) -> nn.Module:
    """A copy of ``model`` with the ``amount`` smallest-magnitude weights of each layer zeroed."""
    if not 0 <= config.amount < 1:
        raise ValueError(f"amount: expected a fraction in [0, 1), got {config.amount}")
    pruned = copy.deepcopy(model)
    with torch.no_grad():
        for module in pruned.modules():
            if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
                weight = module.weight
                k = int(weight.numel() * config.amount)
                if k == 0:
                    continue
                threshold = weight.abs().flatten().kthvalue(k).values
                weight.mul_((weight.abs() > threshold).to(weight.dtype))
    return pruned


def sparsity(model: nn.Module) -> float:
    """Fraction of zero weights over all Linear/Conv layers."""
    zeros = total = 0
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
            zeros += int((module.weight == 0).sum())
            total += module.weight.numel()
    return zeros / total if total else 0.0


__all__ = ["MagnitudeConfig", "magnitude_prune", "sparsity"]
