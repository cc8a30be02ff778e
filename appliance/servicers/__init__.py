"""gRPC servicers: thin adapters from protobuf to the core, and the layers around them.

``WrappingInterceptor`` runs a server's layers (``Layer``) around every RPC; the error
boundary is the first of them on every server.
"""

from appliance.servicers._boundary import ErrorBoundary, Unparsed
from appliance.servicers._wrapping import Call, Layer, Method, WrappingInterceptor
from appliance.servicers.inference import InferenceServicer

__all__ = [
    "Call",
    "ErrorBoundary",
    "InferenceServicer",
    "Layer",
    "Method",
    "Unparsed",
    "WrappingInterceptor",
]
