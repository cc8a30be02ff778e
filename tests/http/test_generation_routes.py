"""The completions and chat routes against the generative protocol, with the official
``openai`` client: response and chunk shapes, SSE ending in ``[DONE]``, usage, errors
before and during a stream, and cancellation when the client goes away.

The engine is not under test here: a small in-test model implements the protocol
(``appliance.http.generative``); everything else is the real HTTP server (aiohttp in
its own event loop on a thread, as in the daemon) over a real, empty model manager.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import openai
import pytest

from appliance.audit import AuditLog
from appliance.config import parse_config
from appliance.errors import ModelNotFoundError, QueueFullError
from appliance.http import HttpServer
from appliance.http.generative import (
    ChatMessage,
    Generation,
    GenerativeModel,
    Piece,
    SamplingOptions,
)
from appliance.manager import ModelManager
from appliance.repository import Repository
from appliance.runtime import choose_providers
from tests._daemon import free_port

WORDS = ["The", " scan", " shows", " no", " fracture", "."]


class EchoModel:
    """Answers with ``WORDS``, one piece each; ``max_tokens`` cuts it (finish "length")."""

    name = "tiny-lm"
    version = 2

    def __init__(self) -> None:
        self.prompts: list[tuple[str, SamplingOptions]] = []
        self.closed = threading.Event()

    def apply_chat_template(self, messages: Sequence[ChatMessage]) -> str:
        return "".join(f"<|{m.role}|>{m.content}" for m in messages) + "<|assistant|>"

    def _words(self, options: SamplingOptions) -> tuple[list[str], str]:
        limit = options.max_tokens or len(WORDS)
        return WORDS[:limit], "length" if limit < len(WORDS) else "stop"

    async def generate(
        self, prompt: str, options: SamplingOptions, deadline: float | None
    ) -> Generation:
        self.prompts.append((prompt, options))
        if prompt == "busy":
            raise QueueFullError("4 requests waiting, the limit of model 'tiny-lm'")
        words, reason = self._words(options)
        return Generation("".join(words), reason, len(prompt), len(words))  # type: ignore[arg-type]

    async def stream(
        self, prompt: str, options: SamplingOptions, deadline: float | None
    ) -> AsyncIterator[Piece]:
        self.prompts.append((prompt, options))
        try:
            if prompt == "busy":
                raise QueueFullError("4 requests waiting, the limit of model 'tiny-lm'")
            words, reason = self._words(options)
            for i, word in enumerate(words[:-1]):
                yield Piece(word)
                if prompt == "fail midway" and i == 1:
                    raise RuntimeError("the engine fell over")
                if prompt == "slow":
                    await asyncio.sleep(60)
            yield Piece(words[-1], reason, len(prompt), len(words))  # type: ignore[arg-type]
        finally:
            self.closed.set()


class Models:
    def __init__(self, model: EchoModel):
        self.model = model

    def get(self, name: str) -> GenerativeModel:
        if name != self.model.name:
            raise ModelNotFoundError(f"no generative model named {name!r}; serving: tiny-lm")
        return self.model

    def names(self) -> list[str]:
        return [self.model.name]


class ServerThread:
    """The real ``HttpServer`` on its own event loop in a thread."""

    def __init__(self, work: Path, model: EchoModel):
        self.port = free_port()
        config = parse_config(
            {
                "server": {"http_address": f"127.0.0.1:{self.port}"},
                "repository": {"path": str(work), "serve_default_model": False},
            }
        )
        self.loop = asyncio.new_event_loop()
        manager = ModelManager(
            Repository([work]), config, choose_providers(["CPUExecutionProvider"])
        )
        self.server = HttpServer(
            config, manager, lambda: True, AuditLog(None), generative=Models(model)
        )
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, EchoModel]]:
    model = EchoModel()
    with ServerThread(tmp_path_factory.mktemp("generation"), model) as server:
        yield server, model


@pytest.fixture
def client(served: tuple[ServerThread, EchoModel]) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{served[0].port}/v1", api_key="unused", max_retries=0
    )


def test_a_completion_has_openai_s_shape_and_usage(
    client: openai.OpenAI, served: tuple[ServerThread, EchoModel]
) -> None:
    completion = client.completions.create(
        model="tiny-lm", prompt="CT head:", max_tokens=3, temperature=0.2, seed=7, stop=["\n"]
    )
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert completion.choices[0].text == "The scan shows"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    assert completion.usage.total_tokens == len("CT head:") + 3
    prompt, options = served[1].prompts[-1]
    assert prompt == "CT head:"
    assert options == SamplingOptions(
        max_tokens=3, temperature=0.2, top_p=None, seed=7, stop=("\n",)
    )


def test_chat_applies_the_model_s_template(
    client: openai.OpenAI, served: tuple[ServerThread, EchoModel]
) -> None:
    reply = client.chat.completions.create(
        model="tiny-lm",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Any fracture?"}]},
        ],
        max_completion_tokens=50,
    )
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == "".join(WORDS)
    assert reply.choices[0].finish_reason == "stop"
    assert served[1].prompts[-1][0] == "<|system|>Be brief.<|user|>Any fracture?<|assistant|>"


def test_a_stream_sends_chunks_then_usage_then_done(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="tiny-lm",
            messages=[{"role": "user", "content": "Any fracture?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(WORDS)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason is not None]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(WORDS)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1


def raw_stream(port: int, path: str, body: dict[str, object]) -> tuple[str, list[str]]:
    """The status line and the ``data:`` lines of a streamed answer, read to its end."""
    payload = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    events = [line for line in rest.decode().splitlines() if line.startswith("data: ")]
    return head.decode().splitlines()[0], events


def test_a_completion_stream_ends_in_done(served: tuple[ServerThread, EchoModel]) -> None:
    status, events = raw_stream(
        served[0].port, "/v1/completions", {"model": "tiny-lm", "prompt": "x", "stream": True}
    )
    assert status.endswith("200 OK")
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == "".join(WORDS)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in chunks)  # not asked for


def test_an_error_before_the_first_piece_is_an_ordinary_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.completions.create(model="tiny-lm", prompt="busy", stream=True)
    assert caught.value.status_code == 429 and "limit of model 'tiny-lm'" in str(caught.value)
    with pytest.raises(openai.RateLimitError):
        client.completions.create(model="tiny-lm", prompt="busy")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="other", messages=[{"role": "user", "content": "x"}])


def test_an_error_midway_is_an_error_event(served: tuple[ServerThread, EchoModel]) -> None:
    status, events = raw_stream(
        served[0].port,
        "/v1/completions",
        {"model": "tiny-lm", "prompt": "fail midway", "stream": True},
    )
    assert status.endswith("200 OK")
    error = json.loads(events[-1].removeprefix("data: "))["error"]
    assert error["type"] == "server_error" and "incident" in error["message"]
    assert "fell over" not in error["message"]  # internal text stays in the log


def test_a_client_that_goes_away_closes_its_stream(served: tuple[ServerThread, EchoModel]) -> None:
    server, model = served
    model.closed.clear()
    payload = json.dumps({"model": "tiny-lm", "prompt": "slow", "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        received = b""
        while b"data: " not in received:  # the first piece arrives; the rest would wait
            chunk = sock.recv(65536)
            assert chunk, "the stream ended before its first piece"
            received += chunk
    # The engine's sequence is freed: the stream was closed, long before its 60 s sleep.
    assert model.closed.wait(30)
