"""Structured pruning of BERT-style encoders: attention heads and FFN neurons removed.

Heads are removed by slicing the Q/K/V projections (rows) and the attention output
projection (columns) head by head (transformers 5 dropped ``prune_heads``; its attention
reshapes with ``-1`` heads, so the sliced layers run as they are); FFN neurons are
removed by slicing ``intermediate.dense`` (rows) and ``output.dense`` (columns).
Importance is the L1 norm of each unit's weights: cheap, data-free, and followed by
recovery distillation from the unpruned model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class TransformerPruneConfig:
    ffn: float = 0.0  # fraction of FFN neurons removed per layer, in [0, 1)
    heads: float = 0.0  # fraction of attention heads removed per layer, in [0, 1)


def _layers(model: nn.Module) -> Any:
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if layers is None:
        base = getattr(model, "base_model", None)
        layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError("expected a BERT-style model with encoder.layer")
    return layers


def _prune_ffn(layer: Any, fraction: float) -> None:
    inter: nn.Linear = layer.intermediate.dense
    out: nn.Linear = layer.output.dense
    keep_n = max(1, round(inter.out_features * (1 - fraction)))
    importance = inter.weight.abs().sum(1) + out.weight.abs().sum(0)  # (ffn,)
    keep = importance.topk(keep_n).indices.sort().values
    new_inter = nn.Linear(inter.in_features, keep_n)
    new_out = nn.Linear(keep_n, out.out_features)
    with torch.no_grad():
        new_inter.weight.copy_(inter.weight[keep])
        new_inter.bias.copy_(inter.bias[keep])
        new_out.weight.copy_(out.weight[:, keep])
        new_out.bias.copy_(out.bias)
    layer.intermediate.dense = new_inter
    layer.output.dense = new_out


def _head_importance(layer: Any, n_heads: int) -> torch.Tensor:
    weight = layer.attention.output.dense.weight  # (hidden, heads * head_dim)
    importance: torch.Tensor = weight.abs().reshape(weight.shape[0], n_heads, -1).sum((0, 2))
    return importance  # (heads,)


def _prune_heads(layer: Any, drop: list[int]) -> None:
    attention = layer.attention.self
    head_dim = int(attention.attention_head_size)
    heads = int(attention.num_attention_heads)
    kept = [h for h in range(heads) if h not in set(drop)]
    keep = torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in kept])
    for name in ("query", "key", "value"):
        old: nn.Linear = getattr(attention, name)
        new = nn.Linear(old.in_features, len(keep))
        with torch.no_grad():
            new.weight.copy_(old.weight[keep])
            new.bias.copy_(old.bias[keep])
        setattr(attention, name, new)
    out: nn.Linear = layer.attention.output.dense
    new_out = nn.Linear(len(keep), out.out_features)
    with torch.no_grad():
        new_out.weight.copy_(out.weight[:, keep])
        new_out.bias.copy_(out.bias)
    layer.attention.output.dense = new_out
    attention.num_attention_heads = len(kept)
    attention.all_head_size = len(keep)


def prune_transformer(model: nn.Module, config: TransformerPruneConfig) -> nn.Module:
    """A copy of ``model`` with the least important heads and FFN neurons removed."""
    for name in ("ffn", "heads"):
        value = getattr(config, name)
        if not 0 <= value < 1:
            raise ValueError(f"{name}: expected a fraction in [0, 1), got {value}")
    pruned = copy.deepcopy(model)
    n_heads = int(pruned.config.num_attention_heads)  # type: ignore[union-attr, arg-type]
    drop = int(n_heads * config.heads)
    for layer in _layers(pruned):
        if config.ffn:
            _prune_ffn(layer, config.ffn)
        if drop:
            order = _head_importance(layer, n_heads).argsort()
            _prune_heads(layer, sorted(int(h) for h in order[:drop]))
    if config.ffn:
        # Uniform across layers, so the config stays truthful and save/reload works.
        width = _layers(pruned)[0].intermediate.dense.out_features
        pruned.config.intermediate_size = width  # type: ignore[union-attr]
    return pruned


__all__ = ["TransformerPruneConfig", "prune_transformer"]
