"""Monitoring: Prometheus metrics, drift against the reference profile, response cache.

``Monitoring`` is the daemon's one entry point (``monitor``); ``metrics``, ``drift`` and
``cache`` hold the parts. The serving core reaches it through three hooks: the model
manager attaches a ``ModelMonitor`` to each loaded version, the model feeds it per batch,
and the inference servicer reports each request's status code.
"""

from appliance.monitoring.cache import ResponseCache
from appliance.monitoring.drift import DriftMonitor, DriftSettings, DriftState, psi
from appliance.monitoring.monitor import ModelFigures, ModelMonitor, Monitoring

__all__ = [
    "DriftMonitor",
    "DriftSettings",
    "DriftState",
    "ModelFigures",
    "ModelMonitor",
    "Monitoring",
    "ResponseCache",
    "psi",
]
