"""Causal language models: tiny Llama teachers trained from scripts, and the
onnxruntime-genai model builder that turns a Hugging Face folder into an int4/int8
ONNX folder the appliance serves.

- ``tiny``: a BPE tokenizer and a small ``LlamaForCausalLM`` trained on the synthetic
  clinical corpus, saved as a local Hugging Face folder (nothing downloaded).
- ``builder``: ``python -m onnxruntime_genai.models.builder`` on such a folder.
"""

from compress.lm.builder import GenaiBuild, build_genai
from compress.lm.tiny import LlamaSpec, build_llama

__all__ = ["GenaiBuild", "LlamaSpec", "build_genai", "build_llama"]
