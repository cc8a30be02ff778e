"""PyTorch model definitions shared by ``compress`` and ``federated``.

Small, explicit modules for the tabular and image tasks the appliance ships recipes for.
A site trains them federatedly; the toolchain distills, prunes and quantizes them. Both
export with ``torch.onnx`` to the same contract: input ``input``, output ``logits``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class TabularMLP(nn.Module):
    """Feature vector to class logits: (batch, features) -> (batch, classes).

    Standardisation is part of the model (buffers ``mean``/``std``), so the exported ONNX
    takes raw features and nobody has to ship a scaler beside it.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (64, 32)):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("std", torch.ones(in_features))
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def set_standardization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Fix the input scaling from training data; std is floored to avoid dividing by 0."""
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (batch, features) -> (batch, classes)
        return self.net((x - self.mean) / self.std)  # type: ignore[no-any-return]


class SmallCNN(nn.Module):
    """Small images to class logits: (batch, channels, H, W) -> (batch, classes).

    Sized for 8x8 digits and similar thumbnails; global average pooling makes it accept
    any H, W of at least 4.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (batch, C, H, W) -> (batch, 2*width, 1, 1) -> (batch, classes)
        return self.head(self.features(x).flatten(1))  # type: ignore[no-any-return]


__all__ = ["SmallCNN", "TabularMLP"]
