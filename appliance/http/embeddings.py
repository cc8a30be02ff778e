"""``/v1/embeddings``: texts (or token ids) to vectors, through the serving core.

Owns one embeddings request from validated schema to response vectors: find the model
(an ``embedding`` model: a version loaded with a ``TextEmbedder``), tokenize, split
the inputs into batches of the model's maximum batch size, run each through
``ModelManager.infer`` (so the batcher, the queue limit, statistics and monitoring see
them like any V2 request, against one pinned version), pool, and encode the vectors
as floats or base64 (little-endian float32, what the ``openai`` client asks for by
default). Tokenization and pooling are ``appliance.embedding``'s.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.embedding import TextEmbedder
from appliance.errors import ApplianceError
from appliance.http.errors import FieldError
from appliance.http.openai_schemas import EmbeddingsRequest
from appliance.manager import ModelManager
from appliance.model import Array, LoadedModel, RequestTensor

#: Texts tokenized on the event loop at most; more go to a worker thread.
_INLINE_TEXTS = 16


@dataclass(frozen=True)
class Embeddings:
    model: LoadedModel
    vectors: Array  # (inputs, dim) float32
    tokens: int


def embedding_models(manager: ModelManager) -> list[LoadedModel]:
    """The default versions of the models that serve ``/v1/embeddings``."""
    found = []
    for name in manager.names():
        try:
            model = manager.get(name)
        except ApplianceError:  # no active version right now
            continue
        if isinstance(model, LoadedModel) and model.embedder is not None:
            found.append(model)
    return found


def _embedding_model(manager: ModelManager, name: str) -> tuple[LoadedModel, TextEmbedder]:
    model = manager.get(name)
    if not isinstance(model, LoadedModel) or model.embedder is None:
        served = ", ".join(m.name for m in embedding_models(manager)) or "none"
        raise FieldError(
            "model",
            f"model {name!r} is not an embedding model; embedding models served: {served}",
        )
    return model, model.embedder


async def embed(
    manager: ModelManager, request: EmbeddingsRequest, deadline: float | None
) -> Embeddings:
    model, embedder = _embedding_model(manager, request.model)
    if request.dimensions is not None and request.dimensions != embedder.dimensions:
        raise FieldError(
            "dimensions",
            f"model {model.name!r} gives {embedder.dimensions} dimensions and cannot shorten "
            f"them; got {request.dimensions}",
        )
    texts = request.texts()
    if texts is None:
        ids = embedder.check_ids(request.token_ids())
    elif len(texts) <= _INLINE_TEXTS:
        ids = embedder.tokenize(texts)
    else:
        ids = await asyncio.to_thread(embedder.tokenize, texts)
    rows = max(model.spec.max_batch_size, 1)
    batches = [ids[i : i + rows] for i in range(0, len(ids), rows)]
    pooled = await asyncio.gather(*(_run(manager, model, embedder, b, deadline) for b in batches))
    vectors = np.concatenate([v for v, _ in pooled])
    return Embeddings(model, vectors, sum(t for _, t in pooled))


async def _run(
    manager: ModelManager,
    model: LoadedModel,
    embedder: TextEmbedder,
    ids: Sequence[Sequence[int]],
    deadline: float | None,
) -> tuple[Array, int]:
    encoded = embedder.encode(ids)
    tensors = [
        RequestTensor(name, _V2_INT[array.dtype.name], tuple(array.shape), raw=array.tobytes())
        for name, array in encoded.feeds.items()
    ]
    output = embedder.output.name
    _, outputs = await manager.infer(model.name, str(model.version), tensors, [output], deadline)
    return embedder.pool(outputs[output], encoded.mask), encoded.tokens


_V2_INT = {"int64": "INT64", "int32": "INT32"}


def encode_vectors(vectors: Array, encoding: str) -> list[Any]:
    """Each vector as a list of floats, or base64 of its little-endian float32 bytes."""
    if encoding == "base64":
        little = vectors.astype("<f4", copy=False)
        return [base64.b64encode(row.tobytes()).decode() for row in little]
    return [row.tolist() for row in vectors]


__all__ = ["Embeddings", "embed", "embedding_models", "encode_vectors"]
