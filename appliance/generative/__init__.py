"""Generative models: causal LMs served by onnxruntime-genai's continuous-batching engine.

- ``engine``: the engine thread that owns one ``og.Engine`` and its requests;
- ``model``: a loaded generative version (V2 and the OpenAI routes' protocol);
- ``tensors``: DESIGN.md's V2 tensors (Triton's vLLM backend names), parsed and built;
- ``served``: the daemon's generative models by name, for the OpenAI routes.
"""

from appliance.generative.engine import EngineSettings, GenerationEngine, Turn, genai_provider
from appliance.generative.model import PLATFORM, GenerativeVersion
from appliance.generative.served import ServedGenerative
from appliance.generative.tensors import GenerateRequest, parse_request, parse_sampling

__all__ = [
    "PLATFORM",
    "EngineSettings",
    "GenerateRequest",
    "GenerationEngine",
    "GenerativeVersion",
    "ServedGenerative",
    "Turn",
    "genai_provider",
    "parse_request",
    "parse_sampling",
]
