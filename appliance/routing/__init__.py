"""Routing requests between model versions and models: shadows and cascades.

``shadow``: copies of live requests to a candidate version, compared, never answered;
``cascade``: one model name answered by the cheapest confident stage; ``control``: the
audited admin side of shadows (imported by the daemon, not re-exported here: it needs
the lifecycle, which needs the manager, which needs this package).
"""

from appliance.routing._metrics import RoutingCollector
from appliance.routing.cascade import CASCADE_VERSION, CascadeModel, build_cascades
from appliance.routing.shadow import Shadow, ShadowTraffic, agreement

__all__ = [
    "CASCADE_VERSION",
    "CascadeModel",
    "RoutingCollector",
    "Shadow",
    "ShadowTraffic",
    "agreement",
    "build_cascades",
]
