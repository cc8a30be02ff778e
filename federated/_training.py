"""Local training and evaluation of the shared PyTorch models, with or without DP-SGD.

Owns the loops only: build a ``compress.models`` network from the run settings, run
local epochs of SGD (or DP-SGD: per-example clipping, Gaussian noise, Poisson sampling,
Abadi et al. 2016), and evaluate. It knows nothing of Flower messages; the ClientApp
moves weights in and out, the benchmark calls it directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F  # noqa: N812 (the conventional torch alias)

from compress.models import SmallCNN, TabularMLP
from federated.data import SiteData
from federated.settings import ModelKind, RunSettings


@dataclass(frozen=True)
class TrainResult:
    """What one call of ``train`` did: mean loss, optimiser steps, examples held."""

    loss: float
    steps: int
    num_examples: int


@dataclass(frozen=True)
class DpSgdConfig:
    """Per-example clipping norm C and noise multiplier sigma (noise std is sigma * C)."""

    clip_norm: float
    noise_multiplier: float


def build_model(settings: RunSettings) -> nn.Module:
    """The run's model with deterministic initial weights (same on every process)."""
    torch.manual_seed(settings.seed)
    if settings.model is ModelKind.TABULAR_MLP:
        return TabularMLP(settings.input_shape[0], settings.num_classes, settings.hidden)
    return SmallCNN(in_channels=settings.input_shape[0], num_classes=settings.num_classes)


def get_weights(model: nn.Module) -> dict[str, NDArray[np.generic]]:
    """Parameters and buffers as NumPy arrays, in ``state_dict`` order."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def set_weights(model: nn.Module, weights: Mapping[str, NDArray[np.generic]]) -> None:
    """Load NumPy arrays by name; missing or extra names are an error (strict)."""
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})


def sampling_rate(settings: RunSettings, num_examples: int) -> float:
    """Poisson sampling rate giving ``batch_size`` examples per step on average."""
    return min(1.0, settings.batch_size / max(num_examples, 1))


def steps_per_round(settings: RunSettings, num_examples: int) -> int:
    """Optimiser steps one round of ``local_epochs`` takes at this site."""
    return settings.local_epochs * math.ceil(num_examples / settings.batch_size)


def train(
    model: nn.Module,
    data: SiteData,
    settings: RunSettings,
    generator: torch.Generator,
    dp: DpSgdConfig | None = None,
) -> TrainResult:
    """Run one round of local epochs in place; DP-SGD when ``dp`` is given."""
    model.train()
    optimiser = torch.optim.SGD(
        model.parameters(), lr=settings.learning_rate, momentum=settings.momentum
    )
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    per_epoch = math.ceil(len(data) / settings.batch_size)
    losses = []
    for _ in range(settings.local_epochs):
        order = torch.randperm(len(data), generator=generator)
        for i in range(per_epoch):
            optimiser.zero_grad()
            if dp is None:
                batch = order[i * settings.batch_size : (i + 1) * settings.batch_size]
                loss = F.cross_entropy(model(x[batch]), y[batch])
                loss.backward()  # type: ignore[no-untyped-call]
            else:
                loss = _dp_sgd_gradients(
                    model, x, y, q=sampling_rate(settings, len(data)), dp=dp, generator=generator
                )
            optimiser.step()
            losses.append(float(loss.detach()))
    steps = len(losses)
    return TrainResult(loss=float(np.mean(losses)), steps=steps, num_examples=len(data))


@torch.no_grad()
def evaluate(model: nn.Module, data: SiteData) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``data``."""
    model.eval()
    logits = model(torch.from_numpy(data.x))  # (n, classes)
    y = torch.from_numpy(data.y)
    loss = float(F.cross_entropy(logits, y))
    accuracy = float((logits.argmax(dim=1) == y).float().mean())
    return loss, accuracy


def _dp_sgd_gradients(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    q: float,
    dp: DpSgdConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """Set ``.grad`` to the noisy clipped mean gradient of a Poisson-sampled batch.

    Poisson sampling (each example independently with rate q) is what the RDP analysis
    in ``federated.privacy`` assumes; dividing by the expected batch size q*n, not the
    realised one, keeps the sensitivity at C.
    """
    n = x.shape[0]
    mask = torch.rand(n, generator=generator) < q
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def example_loss(
        p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor
    ) -> torch.Tensor:
        logits = functional_call(model, (p, buffers), (xi.unsqueeze(0),))  # (1, classes)
        return F.cross_entropy(logits, yi.unsqueeze(0))

    xb, yb = x[mask], y[mask]
    summed = {k: torch.zeros_like(v) for k, v in params.items()}
    loss = torch.zeros(())
    if xb.shape[0] > 0:
        per_example = vmap(grad(example_loss), in_dims=(None, 0, 0))(params, xb, yb)
        # (batch,) L2 norm of each example's whole gradient, over every parameter
        norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in per_example.values()))
        factor = (dp.clip_norm / (norms + 1e-6)).clamp(max=1.0)  # (batch,)
        for k, g in per_example.items():
            summed[k] = torch.einsum("b,b...->...", factor, g)
        with torch.no_grad():
            loss = F.cross_entropy(model(xb), yb)
    expected_batch = q * n
    std = dp.noise_multiplier * dp.clip_norm
    for name, param in model.named_parameters():
        noise = torch.normal(0.0, std, size=param.shape, generator=generator)
        param.grad = (summed[name] + noise) / expected_batch
    return loss


__all__ = [
    "DpSgdConfig",
    "TrainResult",
    "build_model",
    "evaluate",
    "get_weights",
    "sampling_rate",
    "set_weights",
    "steps_per_round",
    "train",
]
