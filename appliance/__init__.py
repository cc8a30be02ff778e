"""The serving appliance: KServe V2 gRPC over ONNX Runtime, with dynamic batching.

Imports neither ``compress`` nor ``federated``: a serving box installs only this core.
"""

from appliance.errors import ApplianceError

__version__ = "0.1.0"

__all__ = ["ApplianceError", "__version__"]
