"""One loaded generative model version: its engine thread, tokenizer, V2 and OpenAI faces.

``GenerativeVersion`` is what the model manager holds for a folder with
``genai_config.json`` (a Triton-style ``<model>/<N>/`` or a ``task: text-generation``
package): it implements ``appliance.http.generative.GenerativeModel`` (``generate``,
``stream``, ``apply_chat_template``) for the OpenAI routes, ``infer`` for unary V2
``ModelInfer`` (the whole text), and ``v2_stream`` for ``ModelStreamInfer`` (one
response per piece). Like ``LoadedModel`` it has a ``spec`` (DESIGN.md's tensors),
``stats``, ``state`` and ``drain``, so the manager, the lifecycle and the metadata RPCs
treat both kinds alike.

Prompt length is checked here, on the event loop, before anything is queued: prompt
plus ``max_tokens`` over the context length is INVALID_ARGUMENT naming both numbers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from appliance.errors import InvalidInputError, NotReadyError
from appliance.generative.engine import EngineSettings, GenerationEngine, TokenRecorder, Turn
from appliance.generative.tensors import (
    INPUTS,
    OUTPUTS,
    GenerateRequest,
    parse_request,
    piece_outputs,
    response_outputs,
)
from appliance.generative.types import ChatMessage, Generation, Piece, SamplingOptions
from appliance.model import Array, ModelSpec, ModelState, RequestTensor, Statistics
from appliance.package.manifest import Manifest

log = logging.getLogger(__name__)

PLATFORM = "onnxruntime_genai"
CHAT_TEMPLATE_FILE = "chat_template.jinja"


class GenerativeVersion:
    """A generative model version, READY once its engine thread has built the engine."""

    def __init__(
        self,
        name: str,
        version: int,
        engine: GenerationEngine,
        manifest: Manifest | None = None,
        chat_template: str | None = None,
    ):
        self.spec = ModelSpec(
            name=name,
            version=version,
            inputs=INPUTS,
            outputs=OUTPUTS,
            max_batch_size=0,
            platform=PLATFORM,
        )
        self.engine = engine
        self.manifest = manifest
        self.stats = Statistics()
        self.state = ModelState.READY
        self.cache = None  # no response cache: sampled text is not a pure function
        self._chat_template = chat_template

    @classmethod
    def load(
        cls,
        name: str,
        version: int,
        folder: Path,
        settings: EngineSettings,
        *,
        manifest: Manifest | None = None,
        metrics: TokenRecorder | None = None,
    ) -> GenerativeVersion:
        """Blocking: start the engine thread on ``folder``; ``metrics`` counts its tokens."""
        engine = GenerationEngine.start(folder, settings, metrics)
        template_file = folder / CHAT_TEMPLATE_FILE
        template = template_file.read_text(encoding="utf-8") if template_file.is_file() else None
        return cls(name, version, engine, manifest, template)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> int:
        return self.spec.version

    @property
    def ready(self) -> bool:
        return self.state is ModelState.READY

    @property
    def metrics(self) -> TokenRecorder:
        return self.engine.metrics

    @property
    def in_flight(self) -> int:
        return self.engine.in_flight

    @property
    def providers(self) -> tuple[str, ...]:
        """onnxruntime-genai's provider, as ONNX Runtime names it."""
        return (
            ("CUDAExecutionProvider",)
            if self.engine.settings.provider == "cuda"
            else ("CPUExecutionProvider",)
        )

    @property
    def context_length(self) -> int:
        limit = self.engine.settings.max_session_tokens
        length = self.engine.context_length
        return min(length, limit) if limit else length

    def drain(self, timeout: float | None = None) -> bool:
        """Take no new generations; let running ones finish within ``timeout``, cancel the
        rest, stop the engine thread."""
        if self.state is ModelState.READY:
            self.state = ModelState.UNLOADING
        done = self.engine.close(timeout)
        self.state = ModelState.UNAVAILABLE
        return done

    # -- text in ---------------------------------------------------------------------

    def apply_chat_template(self, messages: Sequence[ChatMessage]) -> str:
        conversation = json.dumps([{"role": m.role, "content": m.content} for m in messages])
        try:
            prompt: str = self.engine.tokenizer.apply_chat_template(
                conversation, template_str=self._chat_template, add_generation_prompt=True
            )
        except RuntimeError as exc:
            raise InvalidInputError(
                f"the model's chat template refused the messages: {exc}"
            ) from None
        return prompt

    def tokenize(self, prompt: str) -> list[int]:
        if not prompt:
            raise InvalidInputError("expected a non-empty prompt, got ''")
        ids: Any = self.engine.tokenizer.encode(prompt)
        return [int(i) for i in np.asarray(ids).reshape(-1)]

    def _submit(self, prompt: str, options: SamplingOptions, deadline: float | None) -> Turn:
        if not self.ready:
            raise NotReadyError(
                f"model {self.name!r} version {self.version} is {self.state.value.lower()}"
            )
        ids = self.tokenize(prompt)
        context = self.context_length
        if len(ids) + (options.max_tokens or 1) > context:
            asked = f" plus max_tokens {options.max_tokens}" if options.max_tokens else ""
            raise InvalidInputError(
                f"the prompt has {len(ids)} tokens{asked}, over the model's context length "
                f"of {context} tokens; expected at most {context} in all"
            )
        return self.engine.submit(ids, options, deadline)

    # -- the OpenAI routes' protocol -----------------------------------------------------

    async def generate(
        self, prompt: str, options: SamplingOptions, deadline: float | None
    ) -> Generation:
        parts: list[str] = []
        async for piece in self.stream(prompt, options, deadline):
            parts.append(piece.text)
            if piece.finish_reason is not None:
                return Generation(
                    "".join(parts),
                    piece.finish_reason,
                    piece.prompt_tokens,
                    piece.completion_tokens,
                )
        raise AssertionError("a generation ended without its final piece")  # pragma: no cover

    async def stream(
        self, prompt: str, options: SamplingOptions, deadline: float | None
    ) -> AsyncGenerator[Piece, None]:
        turn = self._submit(prompt, options, deadline)
        try:
            while True:
                piece = await turn.next()
                yield piece
                if piece.finish_reason is not None:
                    return
        finally:
            turn.cancel()  # a client that left, or aclose(): freed at the next step

    # -- V2 ----------------------------------------------------------------------------

    async def infer(
        self,
        tensors: Sequence[RequestTensor],
        requested_outputs: Sequence[str] = (),
        deadline: float | None = None,
    ) -> dict[str, Array]:
        """Unary ModelInfer: the whole text at once."""
        request = parse_request(tensors, requested_outputs)
        if request.stream:
            raise InvalidInputError(
                "input 'stream' is true: ModelInfer returns the whole text at once; "
                "stream with ModelStreamInfer"
            )
        done = await self.generate(request.prompt, request.options, deadline)
        text = request.prompt + done.text if request.prepend_prompt else done.text
        return response_outputs(
            request,
            text,
            finish_reason=done.finish_reason,
            input_tokens=done.prompt_tokens,
            output_tokens=done.completion_tokens,
            requested=requested_outputs,
        )

    async def v2_stream(
        self, request: GenerateRequest, deadline: float | None
    ) -> AsyncGenerator[tuple[dict[str, Array], bool], None]:
        """ModelStreamInfer: (outputs, final) per response; one final response holding the
        whole text when the request does not ask to stream."""
        if not request.stream:
            done = await self.generate(request.prompt, request.options, deadline)
            text = request.prompt + done.text if request.prepend_prompt else done.text
            yield (
                response_outputs(
                    request,
                    text,
                    finish_reason=done.finish_reason,
                    input_tokens=done.prompt_tokens,
                    output_tokens=done.completion_tokens,
                ),
                True,
            )
            return
        first = True
        pieces = self.stream(request.prompt, request.options, deadline)
        try:
            async for piece in pieces:
                yield piece_outputs(request, piece, first), piece.finish_reason is not None
                first = False
        finally:
            await pieces.aclose()


__all__ = ["PLATFORM", "GenerativeVersion"]
