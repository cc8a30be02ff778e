"""What the OpenAI routes need from a generative model: a small protocol, no engine.

The engine (onnxruntime-genai, continuous batching, cancellation at the next step) is
``appliance.generative``'s; the completions and chat routes (``openai_api``) are written
against these protocols only, so they can be tested without it and wired to it in one
place (``HttpServer(generative=...)``). Cancellation is asyncio's: a route cancels the
task awaiting ``generate`` when its client goes away, and closes the ``stream``
iterator (``aclose``) when a stream ends early; the engine frees the sequence then.

Prompts and generated text are patient data: neither is logged nor put in a metric.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from appliance.generative.types import (
    ChatMessage,
    FinishReason,
    Generation,
    Piece,
    SamplingOptions,
)


class GenerativeModel(Protocol):
    """One loaded generative model version."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int: ...

    def apply_chat_template(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt for a conversation, by the model folder's chat template."""
        ...

    async def generate(
        self, prompt: str, options: SamplingOptions, deadline: float | None
    ) -> Generation:
        """The whole continuation. Raises ``InvalidInputError`` (prompt plus max_tokens
        over the context), ``QueueFullError``, ``DeadlineExceededError``."""
        ...

    def stream(
        self, prompt: str, options: SamplingOptions, deadline: float | None
    ) -> AsyncIterator[Piece]:
        """The continuation piece by piece; the same errors as ``generate``, raised by
        the first ``__anext__``."""
        ...


class GenerativeModels(Protocol):
    """The daemon's generative models, by name (the default version answers)."""

    def get(self, name: str) -> GenerativeModel:
        """Raises ``ModelNotFoundError`` naming the models served, or ``NotReadyError``."""
        ...

    def names(self) -> list[str]: ...


__all__ = [
    "ChatMessage",
    "FinishReason",
    "GenerativeModel",
    "GenerativeModels",
    "Generation",
    "Piece",
    "SamplingOptions",
]
