"""Structured pruning of a Llama-style decoder, in shapes the builder accepts.

- FFN: each layer keeps the intermediate channels with the largest
  ``|gate| * |up| * |down|`` weight norms (the same count in every layer, since the
  builder reads one ``intermediate_size``);
- heads: whole KV groups (a key/value head with its query heads) are removed by the norm
  of their output projection, the same count in every layer, so the query-to-KV ratio
  and ``head_dim`` stay as the builder expects.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from compress.errors import RecipeError


@dataclass(frozen=True)
class LmPruneConfig:
    ffn: float = 0.0  # fraction of FFN channels removed
    heads: float = 0.0  # fraction of KV groups removed


def _linear(old: Any, weight: Any) -> Any:
    from torch import nn

    new = nn.Linear(weight.shape[1], weight.shape[0], bias=old.bias is not None)
    new.weight.data.copy_(weight)
    return new


def _prune_ffn(model: Any, keep: int) -> None:
    import torch

    for layer in model.model.layers:
        mlp = layer.mlp
        score = (
            mlp.gate_proj.weight.norm(dim=1)
            * mlp.up_proj.weight.norm(dim=1)
            * mlp.down_proj.weight.norm(dim=0)
        )
        index = torch.sort(torch.topk(score, keep).indices).values
        mlp.gate_proj = _linear(mlp.gate_proj, mlp.gate_proj.weight.data[index])
        mlp.up_proj = _linear(mlp.up_proj, mlp.up_proj.weight.data[index])
        mlp.down_proj = _linear(mlp.down_proj, mlp.down_proj.weight.data[:, index])
    model.config.intermediate_size = keep


def _prune_groups(model: Any, keep: int) -> None:
    import torch

    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    groups = config.num_key_value_heads
    per_group = config.num_attention_heads // groups
    for layer in model.model.layers:
        attn = layer.self_attn
        o = attn.o_proj.weight.data.view(config.hidden_size, groups, per_group * head_dim)
        chosen = torch.sort(torch.topk(o.norm(dim=(0, 2)), keep).indices).values

        def rows(weight: Any, width: int, chosen: Any = chosen) -> Any:
            return weight.view(groups, width, -1)[chosen].reshape(keep * width, -1)

        attn.q_proj = _linear(attn.q_proj, rows(attn.q_proj.weight.data, per_group * head_dim))
        attn.k_proj = _linear(attn.k_proj, rows(attn.k_proj.weight.data, head_dim))
        attn.v_proj = _linear(attn.v_proj, rows(attn.v_proj.weight.data, head_dim))
        attn.o_proj = _linear(attn.o_proj, o[:, chosen].reshape(config.hidden_size, -1))
    config.head_dim = head_dim
    config.num_key_value_heads = keep
    config.num_attention_heads = keep * per_group
    for layer in model.model.layers:
        layer.self_attn.num_key_value_groups = per_group
        if hasattr(layer.self_attn, "config"):
            layer.self_attn.config = config


def prune_lm(model: Any, config: LmPruneConfig) -> Any:
    """A pruned copy of ``model`` (a Llama-style ``*ForCausalLM``)."""
    pruned = copy.deepcopy(model)
    conf = pruned.config
    if config.ffn:
        keep = max(1, round(conf.intermediate_size * (1 - config.ffn)))
        _prune_ffn(pruned, keep)
    if config.heads:
        keep = round(conf.num_key_value_heads * (1 - config.heads))
        if keep < 1:
            raise RecipeError(
                f"steps.prune.heads: {config.heads} would remove all "
                f"{conf.num_key_value_heads} KV head groups; expected a smaller fraction"
            )
        _prune_groups(pruned, keep)
    return pruned


__all__ = ["LmPruneConfig", "prune_lm"]
