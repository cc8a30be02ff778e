"""The names the ServerApp and the ClientApp agree on: record keys, flags, weight keys.

Kept apart from both sides so the ClientApp need not import the server's strategy code
(and Flower's server packages) to learn a key. ``arrays``, ``metrics`` and ``config``
are the keys Flower's strategies use for their records.
"""

from __future__ import annotations

ARRAYS_KEY = "arrays"
METRICS_KEY = "metrics"
CONFIG_KEY = "config"
# Metric FedAvg weights replies by (and sums in its aggregate).
WEIGHT_KEY = "num-examples"
# Server-side DP averages sites with equal weight: its noise is calibrated to that.
UNIT_WEIGHT_KEY = "unit-weight"
# Evaluate config flag: also reply with per-feature sums (round 0 only).
FEATURE_STATS_KEY = "feature-stats"

__all__ = [
    "ARRAYS_KEY",
    "CONFIG_KEY",
    "FEATURE_STATS_KEY",
    "METRICS_KEY",
    "UNIT_WEIGHT_KEY",
    "WEIGHT_KEY",
]
