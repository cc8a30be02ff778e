"""Monitoring: Prometheus metrics, drift against the reference profile, request outcomes.

``Monitoring`` is the daemon's one entry point (``monitor``); ``metrics``, ``drift`` and
``requests`` hold the parts. It observes and never changes an answer (the response cache,
which does, is the loaded model's: ``appliance.cache``). The serving core reaches it
through two hooks: the model manager attaches a ``ModelMonitor`` to each loaded version,
which the model feeds per batch; and every request's outcome goes to one
``RequestRecorder``, called by the observer layer of the RPC path.
"""

from appliance.monitoring.drift import DriftMonitor, DriftSettings, DriftState, psi
from appliance.monitoring.monitor import ModelMonitor, Monitoring
from appliance.monitoring.requests import RequestRecorder

__all__ = [
    "DriftMonitor",
    "DriftSettings",
    "DriftState",
    "ModelMonitor",
    "Monitoring",
    "RequestRecorder",
    "psi",
]
