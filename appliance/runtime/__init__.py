"""ONNX Runtime on this box: which execution providers, and sessions that run models."""

from appliance.runtime.providers import ProviderChoice, choose_providers
from appliance.runtime.session import Array, Session

__all__ = ["Array", "ProviderChoice", "Session", "choose_providers"]
