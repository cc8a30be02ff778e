"""The HTTP port: KServe V2 REST (as Triton serves it) and an OpenAI-compatible API.

One port, ``server.http_address``, in the daemon's own event loop, over the same core as
gRPC (``ModelManager``, batcher) with the same authentication, TLS, limits, error
mapping, metrics and request log rules:

- ``server``: lifecycle (bind, TLS, drain);
- ``app``: the routes' gate (admission, auth, error boundary, request log);
- ``kserve`` and ``v2_codec``: V2 REST routes, and JSON and binary tensor bodies;
- ``openai_api`` and ``openai_schemas``: ``/v1`` routes, request schemas, response shapes;
- ``embeddings``: ``/v1/embeddings`` over the core (tokenizing and pooling are
  ``appliance.embedding``'s);
- ``generative``: the protocol the completion routes need from a generative model;
- ``errors``: our errors to HTTP statuses and bodies, in one place.
"""

from appliance.http.generative import GenerativeModel, GenerativeModels
from appliance.http.server import HttpServer, http_authenticator

__all__ = ["GenerativeModel", "GenerativeModels", "HttpServer", "http_authenticator"]
