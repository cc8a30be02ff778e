"""Structured pruning of feed-forward stacks: remove whole neurons and conv channels.

Units are physically removed: a producer layer (Linear or Conv2d) loses output units and
the layer that consumes them loses the matching inputs, so the exported graph has
smaller weight tensors and does less work. Importance is the L1 norm of a unit's
weights (Li et al., 2017, "Pruning Filters for Efficient ConvNets").

Pairs are found by walking leaf modules in registration order, which is execution order
for sequential stacks like ``TabularMLP`` and ``SmallCNN``: a producer pairs with the
next Linear/Conv2d when only shape-preserving modules (activations, pooling, dropout,
BatchNorm) sit between them and the sizes match. The last layer (the model's output) is
never a producer, so the output shape never changes. Anything else breaks the chain and
is left alone, so an unusual architecture is pruned less, never broken.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

_PASS_THROUGH = (
    nn.ReLU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.LeakyReLU,
    nn.Dropout,
    nn.Identity,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
)


@dataclass(frozen=True)
class ChannelConfig:
    amount: float  # fraction of each prunable layer's output units removed, in [0, 1)
    min_units: int = 2  # never shrink a layer below this many units


@dataclass
class _Pair:
    producer: str
    consumer: str
    norms: list[str]  # BatchNorm layers between them, sliced with the producer


def _units(layer: nn.Module) -> int:
    if isinstance(layer, nn.Linear):
        return layer.out_features
    if isinstance(layer, nn.Conv2d):
        return layer.out_channels
    raise TypeError(f"expected Linear or Conv2d, got {type(layer).__name__}")


def _inputs(layer: nn.Module) -> int:
    if isinstance(layer, nn.Linear):
        return layer.in_features
    if isinstance(layer, nn.Conv2d):
        return layer.in_channels
    raise TypeError(f"expected Linear or Conv2d, got {type(layer).__name__}")


def _layer(model: nn.Module, name: str) -> nn.Linear | nn.Conv2d:
    layer = model.get_submodule(name)
    if not isinstance(layer, nn.Linear | nn.Conv2d):
        raise TypeError(f"{name}: expected Linear or Conv2d, got {type(layer).__name__}")
    return layer


def find_pairs(model: nn.Module) -> list[_Pair]:
    """(producer, consumer) layer names whose shared units can be removed."""
    pairs: list[_Pair] = []
    producer: str | None = None
    norms: list[str] = []
    for name, module in model.named_modules():
        if list(module.children()):
            continue
        if isinstance(module, nn.Linear | nn.Conv2d):
            if producer is not None and _inputs(module) == _units(_layer(model, producer)):
                pairs.append(_Pair(producer, name, list(norms)))
            producer, norms = name, []
        elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
            norms.append(name)
        elif not isinstance(module, _PASS_THROUGH):
            producer, norms = None, []
    return pairs


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _like(layer: nn.Linear | nn.Conv2d, n_in: int, n_out: int) -> nn.Linear | nn.Conv2d:
    """A fresh layer shaped like ``layer`` with ``n_in`` inputs and ``n_out`` outputs."""
    bias = layer.bias is not None
    if isinstance(layer, nn.Linear):
        return nn.Linear(n_in, n_out, bias=bias)
    return nn.Conv2d(
        n_in,
        n_out,
        layer.kernel_size,  # type: ignore[arg-type]
        layer.stride,  # type: ignore[arg-type]
        layer.padding,  # type: ignore[arg-type]
        layer.dilation,  # type: ignore[arg-type]
        layer.groups,
        bias=bias,
    )


def _slice_out(layer: nn.Linear | nn.Conv2d, keep: torch.Tensor) -> nn.Module:
    new = _like(layer, _inputs(layer), len(keep))
    with torch.no_grad():
        new.weight.copy_(layer.weight[keep])
        if layer.bias is not None and new.bias is not None:
            new.bias.copy_(layer.bias[keep])
    return new


def _slice_in(layer: nn.Linear | nn.Conv2d, keep: torch.Tensor) -> nn.Module:
    new = _like(layer, len(keep), _units(layer))
    with torch.no_grad():
        new.weight.copy_(layer.weight[:, keep])
        if layer.bias is not None and new.bias is not None:
            new.bias.copy_(layer.bias)
    return new


def _slice_norm(norm: nn.Module, keep: torch.Tensor) -> nn.Module:
    new = type(norm)(len(keep), eps=norm.eps, momentum=norm.momentum)
    with torch.no_grad():
        for attr in ("weight", "bias", "running_mean", "running_var"):
            getattr(new, attr).copy_(getattr(norm, attr)[keep])
    return new


def prune_channels(model: nn.Module, config: ChannelConfig) -> nn.Module:
    """A copy of ``model`` with ``amount`` of each prunable layer's units removed."""
    if not 0 <= config.amount < 1:
        raise ValueError(f"amount: expected a fraction in [0, 1), got {config.amount}")
    pruned = copy.deepcopy(model)
    for pair in find_pairs(pruned):
        producer = _layer(pruned, pair.producer)
        units = _units(producer)
        keep_n = max(config.min_units, round(units * (1 - config.amount)))
        if keep_n >= units:
            continue
        importance = producer.weight.detach().abs().flatten(1).sum(1)  # (units,)
        keep = importance.topk(keep_n).indices.sort().values
        _set(pruned, pair.producer, _slice_out(producer, keep))
        for norm in pair.norms:
            _set(pruned, norm, _slice_norm(pruned.get_submodule(norm), keep))
        _set(pruned, pair.consumer, _slice_in(_layer(pruned, pair.consumer), keep))
    return pruned


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["ChannelConfig", "find_pairs", "parameter_count", "prune_channels"]
