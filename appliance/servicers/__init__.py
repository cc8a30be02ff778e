"""gRPC servicers: thin adapters from protobuf to the core, and the error boundary."""

from appliance.servicers._boundary import ErrorBoundary
from appliance.servicers.inference import InferenceServicer

__all__ = ["ErrorBoundary", "InferenceServicer"]
