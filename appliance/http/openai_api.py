"""OpenAI-compatible routes: ``/v1/models``, ``/v1/embeddings``, ``/v1/completions``,
``/v1/chat/completions``, so the official ``openai`` client works with
``base_url="http://HOST:8000/v1"``.

Each route validates its body (``openai_schemas``), calls the core and answers in
OpenAI's shapes; errors get OpenAI's error body from the gate. Embeddings go through
the model manager (``embeddings``); completions and chat go to a generative model
through the ``generative`` protocols. ``stream: true`` answers with server-sent events,
one ``data: {chunk}`` per piece, then ``data: [DONE]``; a request that fails before its
first piece gets an ordinary error response (status and body), one that fails later an
``error`` event. A client that goes away cancels its request (the handler is cancelled,
the stream closed), which frees its sequence in the engine.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from appliance.errors import ModelNotFoundError, status_name
from appliance.http.app import (
    DESCRIBED,
    OUTCOME,
    SERVED_VERSION,
    Described,
    Route,
    read_body,
)
from appliance.http.embeddings import embed, embedding_models, encode_vectors
from appliance.http.errors import ErrorAnswer
from appliance.http.generative import (
    FinishReason,
    GenerativeModel,
    GenerativeModels,
    Piece,
    SamplingOptions,
)
from appliance.http.openai_schemas import (
    ChatRequest,
    CompletionRequest,
    EmbeddingsRequest,
    chat_body,
    chat_choice,
    chat_delta,
    completion_body,
    completion_choice,
    embeddings_body,
    model_entry,
    new_id,
    parse_request,
    usage,
)
from appliance.manager import ModelManager

if TYPE_CHECKING:
    from appliance.monitoring import RequestRecorder

_DONE = b"data: [DONE]\n\n"


def _json(value: Any) -> web.Response:
    return web.Response(body=json.dumps(value).encode(), content_type="application/json")


def _event(value: Any) -> bytes:
    return b"data: " + json.dumps(value, separators=(",", ":")).encode() + b"\n\n"


class _Chunks:
    """The chunk shapes of one stream: ``text_completion`` or ``chat.completion.chunk``."""

    def __init__(self, chat: bool, model: str, include_usage: bool):
        self.chat = chat
        self.model = model
        self.include_usage = include_usage
        self.id = new_id("chatcmpl" if chat else "cmpl")

    def _body(self, choice: dict[str, Any] | None, usage_: dict[str, int] | None) -> Any:
        if self.chat:
            return chat_body(self.id, self.model, choice, usage_, chunk=True)
        return completion_body(self.id, self.model, choice or {}, usage_, chunk=True)

    def opening(self) -> list[Any]:
        """Chat streams start with the assistant's role, as OpenAI's do."""
        if not self.chat:
            return []
        return [self._body(chat_delta({"role": "assistant", "content": ""}, None), None)]

    def piece(self, piece: Piece) -> list[Any]:
        chunks = []
        if piece.text:
            choice = (
                chat_delta({"content": piece.text}, None)
                if self.chat
                else completion_choice(piece.text, None)
            )
            chunks.append(self._body(choice, None))
        if piece.finish_reason is not None:
            chunks.append(self._body(self._final(piece.finish_reason), None))
            if self.include_usage:
                counts = usage(piece.prompt_tokens, piece.completion_tokens)
                chunks.append(self._body(None, counts))
        return chunks

    def _final(self, reason: FinishReason) -> dict[str, Any]:
        return chat_delta({}, reason) if self.chat else completion_choice("", reason)


class OpenAIRoutes:
    def __init__(
        self,
        manager: ModelManager,
        generative: GenerativeModels | None,
        recorder: RequestRecorder,
        max_message_bytes: int,
    ):
        self._manager = manager
        self._generative = generative
        self._recorder = recorder
        self._limit = max_message_bytes
        self._created = int(time.time())

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/v1/models", self.models, "GET /v1/models", "openai"),
            Route("GET", "/v1/models/{model}", self.model, "GET /v1/models/{model}", "openai"),
            Route("POST", "/v1/embeddings", self.embeddings, "POST /v1/embeddings", "openai"),
            Route("POST", "/v1/completions", self.completions, "POST /v1/completions", "openai"),
            Route(
                "POST",
                "/v1/chat/completions",
                self.chat,
                "POST /v1/chat/completions",
                "openai",
            ),
        ]

    # -- models ------------------------------------------------------------------

    def _model_names(self) -> list[str]:
        names = [m.name for m in embedding_models(self._manager)]
        if self._generative is not None:
            names += self._generative.names()
        return sorted(set(names))

    async def models(self, request: web.Request) -> web.Response:
        data = [model_entry(name, self._created) for name in self._model_names()]
        return _json({"object": "list", "data": data})

    async def model(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        if name not in self._model_names():
            served = ", ".join(self._model_names()) or "none"
            raise ModelNotFoundError(f"no model {name!r} on /v1; models served there: {served}")
        return _json(model_entry(name, self._created))

    # -- embeddings --------------------------------------------------------------

    async def embeddings(self, request: web.Request) -> web.Response:
        parsed = parse_request(EmbeddingsRequest, await read_body(request, self._limit))
        request[DESCRIBED] = Described(parsed.model)
        start = time.perf_counter()
        try:
            result = await embed(self._manager, parsed, deadline=None)
        except BaseException as exc:
            self._record(parsed.model, "", status_name(exc), start)
            raise
        version = str(result.model.version)
        request[SERVED_VERSION] = version
        self._record(parsed.model, "", "OK", start, version)
        vectors = encode_vectors(result.vectors, parsed.encoding_format)
        return _json(embeddings_body(parsed.model, vectors, result.tokens))

    def _record(self, name: str, version: str, code: str, start: float, served: str = "") -> None:
        """One inference request ended: ``version`` asked for ("" for the default),
        ``served`` the one that answered, if one did."""
        self._recorder.inference(name, version, code, time.perf_counter() - start, served)

    # -- completions and chat ----------------------------------------------------

    def _generative_model(self, name: str) -> GenerativeModel:
        if self._generative is None:
            raise ModelNotFoundError(
                f"no generative model named {name!r}; generative models served: none"
            )
        return self._generative.get(name)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        parsed = parse_request(CompletionRequest, await read_body(request, self._limit))
        request[DESCRIBED] = Described(parsed.model)
        prompt = parsed.prompt_text()
        model = self._generative_model(parsed.model)
        request[SERVED_VERSION] = str(model.version)
        options = parsed.sampling(parsed.max_tokens)
        if parsed.stream:
            chunks = _Chunks(False, parsed.model, parsed.include_usage())
            return await self._stream(request, model, prompt, options, chunks)
        generation = await model.generate(prompt, options, None)
        counts = usage(generation.prompt_tokens, generation.completion_tokens)
        choice = completion_choice(generation.text, generation.finish_reason)
        return _json(completion_body(new_id("cmpl"), parsed.model, choice, counts, chunk=False))

    async def chat(self, request: web.Request) -> web.StreamResponse:
        parsed = parse_request(ChatRequest, await read_body(request, self._limit))
        request[DESCRIBED] = Described(parsed.model)
        model = self._generative_model(parsed.model)
        request[SERVED_VERSION] = str(model.version)
        prompt = model.apply_chat_template([m.plain() for m in parsed.messages])
        options = parsed.sampling(parsed.token_limit())
        if parsed.stream:
            chunks = _Chunks(True, parsed.model, parsed.include_usage())
            return await self._stream(request, model, prompt, options, chunks)
        generation = await model.generate(prompt, options, None)
        counts = usage(generation.prompt_tokens, generation.completion_tokens)
        choice = chat_choice(generation.text, generation.finish_reason)
        return _json(chat_body(new_id("chatcmpl"), parsed.model, choice, counts, chunk=False))

    async def _stream(
        self,
        request: web.Request,
        model: GenerativeModel,
        prompt: str,
        options: SamplingOptions,
        chunks: _Chunks,
    ) -> web.StreamResponse:
        pieces: AsyncIterator[Piece] = model.stream(prompt, options, None)
        try:
            # A request refused before its first piece gets a plain error response.
            first = await anext(pieces, None)
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            )
            await response.prepare(request)
            try:
                await _send(response, first, pieces, chunks)
            except ConnectionResetError:  # the client went away between two pieces
                request[OUTCOME] = "CANCELLED"
            return response
        finally:
            close = getattr(pieces, "aclose", None)  # an async generator's; stops the engine
            if close is not None:
                await close()


async def _send(
    response: web.StreamResponse, first: Piece | None, pieces: AsyncIterator[Piece], chunks: _Chunks
) -> None:
    """The events of one stream, then ``[DONE]``; a failure midway is an error event."""
    for chunk in chunks.opening() + (chunks.piece(first) if first is not None else []):
        await response.write(_event(chunk))
    try:
        async for piece in pieces:
            for chunk in chunks.piece(piece):
                await response.write(_event(chunk))
    except ConnectionResetError:
        raise
    except Exception as exc:  # the status line is sent: say it in the stream
        await response.write(b"data: " + ErrorAnswer(exc, "stream", "openai").body + b"\n\n")
        return
    await response.write(_DONE)
    await response.write_eof()


__all__ = ["OpenAIRoutes"]
