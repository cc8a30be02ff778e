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
from dataclasses import dataclass, field
from typing import Literal, Protocol

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class SamplingOptions:
    """The sampling keys both protocols share (Triton's vLLM ``sampling_parameters``)."""

    max_tokens: int | None = None  # None: up to the context length
    temperature: float | None = None  # None: the model's default; 0: greedy
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Generation:
    """A whole answer, for a request that does not stream."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Piece:
    """One streamed piece of text; the last one carries the finish reason and counts."""

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant", "developer"]
    content: str


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
