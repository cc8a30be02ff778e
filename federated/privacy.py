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

import numpy as np
from numpy.typing import NDArray

from federated.errors import PrivacyBudgetError, SettingsError

# Orders 2..255 cover ε from about 0.05 to several hundred at the δ we use.
DEFAULT_ORDERS: tuple[int, ...] = tuple(range(2, 256))


def rdp_subsampled_gaussian(q: float, noise_multiplier: float, order: int) -> float:
    """RDP at integer ``order`` of one step with sampling rate ``q`` and noise sigma."""
    if order < 2:
        raise SettingsError(f"RDP order: expected an integer of at least 2, got {order}")
    return float(_rdp_per_order(q, noise_multiplier, (order,))[0])


def epsilon(
    q: float,
    noise_multiplier: float,
    steps: int,
    delta: float,
    orders: tuple[int, ...] = DEFAULT_ORDERS,
) -> float:
    """Epsilon at ``delta`` after ``steps`` composed subsampled Gaussian steps."""
    if steps < 0:
        raise SettingsError(f"steps: expected 0 or more, got {steps}")
    if not 0.0 < delta < 1.0:
        raise SettingsError(f"delta: expected a value in (0, 1), got {delta}")
    if steps == 0 or q == 0.0:
        return 0.0
    a = np.asarray(orders, dtype=np.float64)
    rdp = steps * _rdp_per_order(q, noise_multiplier, orders)
    with np.errstate(invalid="ignore"):  # inf RDP (no noise) stays inf
        eps = rdp + np.log((a - 1) / a) - (math.log(delta) + np.log(a)) / (a - 1)
    return max(float(np.nanmin(eps)), 0.0)


def _rdp_per_order(
    q: float, noise_multiplier: float, orders: tuple[int, ...]
) -> NDArray[np.float64]:
    """RDP of one step at each integer order, all orders in one array computation."""
    if not 0.0 <= q <= 1.0:
        raise SettingsError(f"sampling rate: expected a value in [0, 1], got {q}")
    if q == 0.0:
        return np.zeros(len(orders))
    if noise_multiplier <= 0.0:
        return np.full(len(orders), math.inf)
    order_col = np.asarray(orders)[:, None]  # (orders, 1)
    if q == 1.0:
        return np.asarray(order_col[:, 0] / (2.0 * noise_multiplier**2), dtype=np.float64)
    k = np.arange(max(orders) + 1)[None, :]  # (1, max_order + 1)
    valid = k <= order_col  # (orders, max_order + 1): terms k = 0..a of each order's sum
    log_fact = np.asarray([math.lgamma(n + 1) for n in range(max(orders) + 1)])
    log_binom = log_fact[order_col] - log_fact[k] - log_fact[np.where(valid, order_col - k, 0)]
    log_terms = (
        log_binom
        + (order_col - k) * math.log1p(-q)
        + k * math.log(q)
        + (k * k - k) / (2.0 * noise_multiplier**2)
    )
    log_terms = np.where(valid, log_terms, -np.inf)
    top = log_terms.max(axis=1, keepdims=True)
    log_a = top[:, 0] + np.log(np.exp(log_terms - top).sum(axis=1))
    return np.asarray(log_a / (order_col[:, 0] - 1), dtype=np.float64)


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


__all__ = [
    "DEFAULT_ORDERS",
    "PrivacyLedger",
    "calibrate_noise",
    "epsilon",
    "rdp_subsampled_gaussian",
]
