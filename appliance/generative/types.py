"""What a generation asks and answers: sampling options, whole answers, streamed pieces.

Plain frozen dataclasses shared by the engine (``appliance.generative``), the V2 tensors
and the OpenAI routes' protocol (``appliance.http.generative``), so neither front door
depends on the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class SamplingOptions:
    """The sampling keys both protocols share (Triton's vLLM ``sampling_parameters``)."""

    max_tokens: int | None = None  # None: up to the context length
    temperature: float | None = None  # None: the model's default; 0: greedy
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)
    top_k: int | None = None  # V2 only; OpenAI has no top_k
    repetition_penalty: float | None = None  # V2 only


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


__all__ = ["ChatMessage", "FinishReason", "Generation", "Piece", "SamplingOptions"]
