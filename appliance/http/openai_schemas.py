"""OpenAI API shapes: request schemas (pydantic, validated) and response bodies.

Requests follow https://platform.openai.com/docs/api-reference (embeddings,
completions, chat completions) as the official ``openai`` client sends them. What the
box does not do is refused with a message naming the field, never ignored: ``n`` above 1,
tools and function calling, log probabilities, penalties, logit bias, ``echo``,
``suffix``, ``best_of``, a ``response_format`` other than text, and any field this
schema does not know. Validation errors name the field (the OpenAI body's ``param``)
and what was expected; they quote a number a client sent, never its text (prompts are
patient data and error messages are logged).

Responses are plain dicts in OpenAI's shapes: ``text_completion``, ``chat.completion``,
``chat.completion.chunk``, ``list`` of ``embedding``, ``usage``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from appliance.http.errors import FieldError
from appliance.http.generative import ChatMessage, FinishReason, SamplingOptions

#: OpenAI's own limits: inputs per embeddings request, stop sequences per request.
MAX_EMBEDDING_INPUTS = 2048
MAX_STOP_SEQUENCES = 4

#: Fields the box refuses unless they hold the value that means "off".
_UNSUPPORTED: dict[str, tuple[tuple[Any, ...], str]] = {
    "n": ((1, None), "only n = 1 is supported: send one request per completion"),
    "best_of": ((1, None), "best_of is not supported"),
    "echo": ((False, None), "echo is not supported"),
    "suffix": ((None,), "suffix (insertion) is not supported"),
    "logprobs": ((None, False), "log probabilities are not supported"),
    "top_logprobs": ((None, 0), "log probabilities are not supported"),
    "presence_penalty": ((None, 0, 0.0), "presence_penalty is not supported"),
    "frequency_penalty": ((None, 0, 0.0), "frequency_penalty is not supported"),
    "logit_bias": ((None,), "logit_bias is not supported"),
    "tools": ((None,), "tool calling is not supported by this server"),
    "tool_choice": ((None, "none"), "tool calling is not supported by this server"),
    "parallel_tool_calls": ((None,), "tool calling is not supported by this server"),
    "functions": ((None,), "function calling is not supported by this server"),
    "function_call": ((None, "none"), "function calling is not supported by this server"),
    "audio": ((None,), "audio output is not supported"),
    "modalities": ((None, ["text"]), "only text output is supported"),
    "prediction": ((None,), "predicted outputs are not supported"),
}


def _number(value: Any) -> str:
    """A value fit to quote in an error: numbers and booleans only (never text)."""
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    kinds: dict[type, str] = {str: "a string", list: "an array", dict: "an object"}
    return kinds.get(type(value), "null")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse_unsupported(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for key, (allowed, why) in _UNSUPPORTED.items():
            if key in data and data[key] not in allowed:
                raise FieldError(key, f"{why} (got {_number(data[key])})")
        return {k: v for k, v in data.items() if k not in _UNSUPPORTED}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    include_usage: bool = False


class _Generation(_Request):
    model: str = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # accepted for compatibility; not logged

    @model_validator(mode="after")
    def _check_stop(self) -> _Generation:
        stops = self.stop_sequences()
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ValueError(f"stop: at most {MAX_STOP_SEQUENCES} sequences, got {len(stops)}")
        if any(not s for s in stops):
            raise ValueError("stop: expected non-empty strings")
        return self

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def sampling(self, max_tokens: int | None) -> SamplingOptions:
        return SamplingOptions(
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            stop=self.stop_sequences(),
        )


class CompletionRequest(_Generation):
    prompt: str | list[str]
    # OpenAI's default for the legacy completions endpoint.
    max_tokens: int | None = Field(default=16, ge=1)

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise FieldError(
                "prompt", f"expected one prompt per request, got {len(self.prompt)} prompts"
            )
        return self.prompt[0]


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def plain(self) -> ChatMessage:
        if isinstance(self.content, str):
            return ChatMessage(self.role, self.content)
        return ChatMessage(self.role, "".join(p.text for p in self.content))


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["text"]


class ChatRequest(_Generation):
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: ResponseFormat | None = None

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class EmbeddingsRequest(_Request):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @model_validator(mode="after")
    def _check_count(self) -> EmbeddingsRequest:
        count = 1 if isinstance(self.input, str) else len(self.input)
        if not 1 <= count <= MAX_EMBEDDING_INPUTS:
            raise ValueError(
                f"input: expected 1 to {MAX_EMBEDDING_INPUTS} inputs per request, got {count}"
            )
        return self

    def texts(self) -> list[str] | None:
        """The texts to embed, or None when the client sent token ids."""
        if isinstance(self.input, str):
            return [self.input]
        if all(isinstance(v, str) for v in self.input):
            return [str(v) for v in self.input]
        return None

    def token_ids(self) -> list[list[int]]:
        """Token id rows: one row (a flat list of ids) or several."""
        rows: list[Any] = [self.input] if isinstance(self.input, str) else list(self.input)
        if all(isinstance(v, int) for v in rows):
            return [[int(v) for v in rows]]
        return [[int(t) for t in row] for row in rows]


Request = TypeVar("Request", bound=BaseModel)


def parse_request(schema: type[Request], body: bytes) -> Request:
    """Validate a JSON body; a problem becomes a ``FieldError`` naming the field."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FieldError("", f"expected a JSON object in the request body: {exc}") from exc
    if not isinstance(data, dict):
        raise FieldError("", f"expected a JSON object in the request body, got {_number(data)}")
    try:
        return schema.model_validate(data)
    except FieldError:
        raise
    except ValidationError as exc:
        raise _field_error(exc) from None


def _field_error(exc: ValidationError) -> FieldError:
    err = exc.errors()[0]
    param = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
    if err["type"] == "extra_forbidden":
        return FieldError(param, "unknown field; not part of this API")
    if err["type"] == "missing":
        return FieldError(param, "required field is missing")
    message = err["msg"].removeprefix("Value error, ")
    field, sep, _ = message.partition(":")
    if not param and sep and field.isidentifier():  # a whole-request check naming its field
        param = field
    if message.startswith(f"{param}:"):
        return FieldError(param, message.removeprefix(f"{param}:").strip())
    return FieldError(param, f"{message} (got {_number(err.get('input'))})")


# -- responses ------------------------------------------------------------------------


def usage(prompt_tokens: int, completion_tokens: int = 0) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def new_id(prefix: Literal["cmpl", "chatcmpl"]) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def _finish(reason: FinishReason | None) -> str | None:
    # OpenAI has no "cancelled"; a cancelled request has no client left to read it.
    return "stop" if reason == "cancelled" else reason


def completion_body(
    id_: str, model: str, choice: dict[str, Any], usage_: dict[str, int] | None, chunk: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": id_,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice] if choice else [],
    }
    if usage_ is not None or not chunk:
        body["usage"] = usage_
    return body


def completion_choice(text: str, reason: FinishReason | None) -> dict[str, Any]:
    return {"index": 0, "text": text, "logprobs": None, "finish_reason": _finish(reason)}


def chat_body(
    id_: str, model: str, choice: dict[str, Any] | None, usage_: dict[str, int] | None, chunk: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": id_,
        "object": "chat.completion.chunk" if chunk else "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice] if choice is not None else [],
    }
    if usage_ is not None or not chunk:
        body["usage"] = usage_
    return body


def chat_choice(text: str, reason: FinishReason | None) -> dict[str, Any]:
    return {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "logprobs": None,
        "finish_reason": _finish(reason),
    }


def chat_delta(delta: dict[str, str], reason: FinishReason | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": _finish(reason)}


def embeddings_body(model: str, vectors: list[Any], prompt_tokens: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def model_entry(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "appliance"}


__all__ = [
    "MAX_EMBEDDING_INPUTS",
    "ChatRequest",
    "CompletionRequest",
    "EmbeddingsRequest",
    "chat_body",
    "chat_choice",
    "chat_delta",
    "completion_body",
    "completion_choice",
    "embeddings_body",
    "model_entry",
    "new_id",
    "parse_request",
    "usage",
]
