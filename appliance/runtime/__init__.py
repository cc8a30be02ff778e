"""ONNX Runtime on this box: which execution providers, how sessions are opened, and the
sessions that run models."""

from appliance.runtime.factory import open_session
from appliance.runtime.providers import ProviderChoice, choose_providers
from appliance.runtime.session import Array, Session

__all__ = ["Array", "ProviderChoice", "Session", "choose_providers", "open_session"]
