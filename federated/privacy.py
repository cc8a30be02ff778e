"""Privacy accounting for the subsampled Gaussian mechanism (DP-SGD), in Rényi DP.

Owns the arithmetic only: RDP of one Poisson-subsampled Gaussian step, composition over
steps, conversion to (ε, δ), and calibration of the noise multiplier for a target ε.
The DP-SGD step that spends this budget lives in ``federated._training``; Flower's
server-side DP wrappers keep their own accounting.

References:
- Mironov, Talwar, Zhang, "Rényi Differential Privacy of the Sampled Gaussian Mechanism"
  (2019), section 3.3: for integer orders a,
  A_a = sum_k C(a,k) (1-q)^(a-k) q^k exp((k²-k) / (2 sigma^2)) and RDP(a) = log(A_a) / (a-1).
- Balle et al., "Hypothesis Testing Interpretations and Rényi DP" (2020), Theorem 21:
  ε = RDP(a) + log((a-1)/a) - (log δ + log a) / (a-1), minimised over a.

Integer orders give a slightly looser (larger) ε than fractional ones: safe, not tight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from federated.errors import PrivacyBudgetError, SettingsError

# Orders 2..255 cover ε from about 0.05 to several hundred at the δ we use.
DEFAULT_ORDERS: tuple[int, ...] = tuple(range(2, 256))


def rdp_subsampled_gaussian(q: float, noise_multiplier: float, order: int) -> float:
    """RDP at integer ``order`` of one step with sampling rate ``q`` and noise multiplier sigma."""
    if not 0.0 <= q <= 1.0:
        raise SettingsError(f"sampling rate: expected a value in [0, 1], got {q}")
    if order < 2:
        raise SettingsError(f"RDP order: expected an integer of at least 2, got {order}")
    if q == 0.0:
        return 0.0
    if noise_multiplier <= 0.0:
        return math.inf
    if q == 1.0:
        return order / (2.0 * noise_multiplier**2)
    log_terms = [
        _log_binom(order, k)
        + (order - k) * math.log1p(-q)
        + k * math.log(q)
        + (k * k - k) / (2.0 * noise_multiplier**2)
        for k in range(order + 1)
    ]
    return _logsumexp(log_terms) / (order - 1)


def epsilon(
    q: float,
    noise_multiplier: float,
    steps: int,
    delta: float,
    orders: tuple[int, ...] = DEFAULT_ORDERS,
) -> float:
    """ε at ``delta`` after ``steps`` composed subsampled Gaussian steps."""
    if steps < 0:
        raise SettingsError(f"steps: expected 0 or more, got {steps}")
    if not 0.0 < delta < 1.0:
        raise SettingsError(f"delta: expected a value in (0, 1), got {delta}")
    if steps == 0 or q == 0.0:
        return 0.0
    best = math.inf
    for a in orders:
        rdp = steps * rdp_subsampled_gaussian(q, noise_multiplier, a)
        eps = rdp + math.log((a - 1) / a) - (math.log(delta) + math.log(a)) / (a - 1)
        best = min(best, eps)
    return max(best, 0.0)


def calibrate_noise(
    q: float, steps: int, delta: float, target_epsilon: float, tolerance: float = 1e-3
) -> float:
    """The smallest noise multiplier (within ``tolerance``) whose ε is at most the target."""
    if target_epsilon <= 0:
        raise SettingsError(f"target epsilon: expected a positive number, got {target_epsilon}")
    low, high = 0.0, 1.0
    while epsilon(q, high, steps, delta) > target_epsilon:
        low, high = high, 2.0 * high
        if high > 1e4:
            raise PrivacyBudgetError(
                f"no noise multiplier up to 1e4 reaches ε={target_epsilon} at δ={delta} "
                f"with sampling rate {q:.4g} over {steps} steps"
            )
    while high - low > tolerance:
        mid = (low + high) / 2.0
        if epsilon(q, mid, steps, delta) > target_epsilon:
            low = mid
        else:
            high = mid
    return high


@dataclass
class PrivacyLedger:
    """What one site has spent: its sampling rate, noise, and steps taken so far."""

    sampling_rate: float
    noise_multiplier: float
    delta: float
    steps: int = 0

    def spend(self, steps: int) -> tuple[float, float]:
        """Record ``steps`` more DP-SGD steps; return (ε of these steps, ε in total)."""
        self.steps += steps
        return (
            epsilon(self.sampling_rate, self.noise_multiplier, steps, self.delta),
            epsilon(self.sampling_rate, self.noise_multiplier, self.steps, self.delta),
        )


def _log_binom(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


__all__ = [
    "DEFAULT_ORDERS",
    "PrivacyLedger",
    "calibrate_noise",
    "epsilon",
    "rdp_subsampled_gaussian",
]
