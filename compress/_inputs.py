"""How samples become model inputs: arrays pass through, texts are tokenized.

One ``InputAdapter`` serves PyTorch (training, export dummies) and ONNX Runtime (feeds), so
both see exactly the same tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

#: Tensor names an array model is exported with (the appliance contract: DESIGN.md).
ARRAY_INPUT = "input"
ARRAY_OUTPUT = "logits"


@dataclass(frozen=True)
class InputAdapter:
    """Turns a slice of samples into named input arrays.

    ``tokenizer`` is set for text models; ``max_length`` bounds their sequence length.
    """

    tokenizer: Any = None
    max_length: int = 128

    def arrays(
        self, x: np.ndarray | Sequence[str], pad_to_max: bool = False
    ) -> dict[str, np.ndarray]:
        if self.tokenizer is None:
            return {ARRAY_INPUT: np.asarray(x, dtype=np.float32)}
        encoded = self.tokenizer(
            list(x),
            padding="max_length" if pad_to_max else True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="np",
        )
        # (batch, seq) int64 each: input_ids, attention_mask, token_type_ids
        return {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()}

    def tensors(self, x: np.ndarray | Sequence[str]) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v) for k, v in self.arrays(x).items()}


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Sentence embeddings: mask-aware mean over tokens, then L2-normalised.

    hidden (batch, seq, dim), mask (batch, seq) -> (batch, dim)
    """
    weights = mask[..., None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    pooled = summed / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return pooled / np.clip(norms, 1e-12, None)  # type: ignore[no-any-return]


def torch_mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """As ``mean_pool``, differentiable: (batch, seq, dim), (batch, seq) -> (batch, dim)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


__all__ = ["ARRAY_INPUT", "ARRAY_OUTPUT", "InputAdapter", "mean_pool", "torch_mean_pool"]
