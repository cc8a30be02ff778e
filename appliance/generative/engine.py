"""The engine thread: one ``og.Engine`` per loaded generative version, and its requests.

onnxruntime-genai's ``Engine`` batches the steps of concurrent requests (continuous
batching: a request joins between steps, leaves when its turn finishes) but must be
called from the one thread that created it. So each version owns one thread that
builds the model, tokenizer stream decoders and engine, and loops: admit new requests
(``begin_turn``), cancel the ones whose client left or whose deadline passed
(``cancel_turn``: the engine frees their cache at its next step), run one step, hand
the decoded pieces to the asyncio side. The asyncio side talks to it only through a
thread-safe queue (requests in) and ``call_soon_threadsafe`` (pieces out).
``Engine.run`` releases the GIL while it computes (measured: a Python thread kept
about 60 % of its solo speed during steps on 2 cores), so the daemon's event loop
keeps serving while the engine steps.

Capacity: at most ``max_batch_size + max_queue_size`` sequences are in flight; one more
is refused at once (``QueueFullError``: RESOURCE_EXHAUSTED). Which rows run together is
the engine's choice: on CPU onnxruntime-genai 0.18 runs static batches of up to 4 rows
(its fixed limit), on CUDA with a model built for paged attention it batches
dynamically up to ``max_batch_size`` rows in a paged KV cache.

Stop strings are matched here on the decoded text (the static-batch engine refuses
them), so both engines stop the same way. Texts never leave this module except as the
pieces the caller asked for: nothing is logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from appliance.errors import (
    DeadlineExceededError,
    InferenceError,
    InvalidInputError,
    ModelLoadError,
    NotReadyError,
    QueueFullError,
)
from appliance.generative._stops import StopScanner
from appliance.generative.types import FinishReason, Piece, SamplingOptions
from appliance.runtime.providers import CUDA, TENSORRT, ProviderChoice

log = logging.getLogger(__name__)

#: Rows per step when neither config nor provider says more: onnxruntime-genai's static
#: batch size on CPU (fixed there), and its dynamic default on CUDA.
DEFAULT_BATCH = {"cpu": 4, "cuda": 16}
#: Events one ``Engine.run`` may return: a token per row plus a finish per row.
_EVENT_CAPACITY = 256


class TokenRecorder(Protocol):
    """Who counts tokens and sequences (``appliance.monitoring.metrics.GenerationMetrics``):
    ``sequence_started`` on the event loop, the others in the engine thread."""

    def sequence_started(self, prompt_tokens: int) -> None: ...
    def first_token(self, seconds: float) -> None: ...
    def next_token(self, seconds: float) -> None: ...
    def sequence_ended(self, generated: int) -> None: ...


class _Uncounted:
    """No monitoring: nothing is recorded."""

    def sequence_started(self, prompt_tokens: int) -> None:
        return None

    def first_token(self, seconds: float) -> None:
        return None

    def next_token(self, seconds: float) -> None:
        return None

    def sequence_ended(self, generated: int) -> None:
        return None


def genai_provider(choice: ProviderChoice) -> str:
    """onnxruntime-genai's provider name for the box's ONNX Runtime choice: ``cuda`` when
    a GPU provider was chosen (TensorRT's box has CUDA too), else ``cpu``."""
    names = choice.names
    return "cuda" if CUDA in names or TENSORRT in names else "cpu"


@dataclass(frozen=True)
class EngineSettings:
    """Capacity of one generative version (``[models.NAME]`` over the defaults)."""

    provider: str = "cpu"  # "cpu" | "cuda"
    max_batch_size: int | None = None  # None: DEFAULT_BATCH[provider]
    max_queue_size: int = 64  # waiting sequences beyond the running batch
    max_session_tokens: int | None = None  # None: the model's context length
    kv_cache_fraction: float | None = None  # CUDA paged cache: share of free GPU memory

    @property
    def batch(self) -> int:
        return self.max_batch_size or DEFAULT_BATCH.get(self.provider, 4)

    def overlay(self, paged: bool) -> dict[str, Any]:
        """The genai_config overlay for these settings (``og.Config.overlay``)."""
        if not paged:
            return {"engine": {"static_batching": {"max_batch_size": self.batch}}}
        dynamic: dict[str, Any] = {"max_batch_size": self.batch}
        if self.kv_cache_fraction is not None:
            dynamic["gpu_utilization_factor"] = self.kv_cache_fraction
        return {"engine": {"dynamic_batching": dynamic}}


@dataclass
class _Job:
    """One request on its way through the engine thread (fields owned by that thread,
    except ``cancelled``, which the asyncio side sets)."""

    ids: np.ndarray[Any, np.dtype[np.int32]]  # (prompt_tokens,)
    options: SamplingOptions
    deadline: float | None
    deliver: Callable[[Piece | BaseException], None]
    submitted: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    request: Any = None  # og.Request once begun
    turn: int = 0
    stream: Any = None  # og.TokenizerStream
    stops: StopScanner | None = None
    stop_matched: bool = False
    last_token_at: float = 0.0
    tokens: int = 0

    @property
    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline


class Turn:
    """The asyncio side of one generation: pieces arrive in order; ``cancel`` stops it
    at the engine's next step."""

    def __init__(self, job: _Job, pieces: asyncio.Queue[Piece | BaseException]):
        self._job = job
        self._pieces = pieces
        self.done = False

    async def next(self) -> Piece:
        """The next piece; the last has a ``finish_reason``. Raises the request's error."""
        item = await self._pieces.get()
        if isinstance(item, BaseException):
            self.done = True
            raise item
        if item.finish_reason is not None:
            self.done = True
        return item

    def cancel(self) -> None:
        if not self.done:
            # Read by the engine thread before its next step (a plain store: atomic).
            self._job.cancelled = True


class GenerationEngine:
    """One generative model folder loaded in its own engine thread."""

    def __init__(
        self, folder: Path, settings: EngineSettings, metrics: TokenRecorder | None = None
    ):
        self.folder = folder
        self.settings = settings
        self.metrics: TokenRecorder = metrics or _Uncounted()
        self.paged = False
        self.context_length = 0
        self.tokenizer: Any = None  # og.Tokenizer: encode/apply_chat_template from any thread
        self._inbox: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._closing = False
        self._idle = threading.Condition(self._lock)
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        # onnxruntime-genai objects: built, used and dropped by the engine thread only.
        self._og: Any = None
        self._model: Any = None
        self._engine: Any = None
        self._buffer: Any = None
        self._active: dict[int, _Job] = {}  # id(og.Request) -> its job
        self._thread = threading.Thread(
            target=self._main, name=f"genai:{folder.parent.name}:{folder.name}", daemon=True
        )

    # -- lifecycle (any thread) ------------------------------------------------------

    @classmethod
    def start(
        cls, folder: Path, settings: EngineSettings, metrics: TokenRecorder | None = None
    ) -> GenerationEngine:
        """Blocking: build the model and engine in their thread; raise if that fails."""
        engine = cls(folder, settings, metrics)
        engine._thread.start()
        engine._ready.wait()
        if engine._failure is not None:
            engine._thread.join()
            raise engine._failure
        return engine

    @property
    def capacity(self) -> int:
        return self.settings.batch + self.settings.max_queue_size

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def close(self, timeout: float | None = None) -> bool:
        """Take no more requests; let running ones finish within ``timeout`` (None:
        wait), cancel the rest, stop the thread. True when nothing had to be cancelled."""
        with self._lock:
            self._closing = True
            finished = self._idle.wait_for(lambda: self._in_flight == 0, timeout)
        self._inbox.put(None)  # the thread cancels what is left and exits
        self._thread.join()
        return finished

    # -- requests (event loop) ---------------------------------------------------------

    def submit(
        self,
        ids: Sequence[int],
        options: SamplingOptions,
        deadline: float | None,
    ) -> Turn:
        """Queue one generation; refuse it at once when the engine is full or closing."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[Piece | BaseException] = asyncio.Queue()

        def deliver(item: Piece | BaseException) -> None:  # engine thread
            loop.call_soon_threadsafe(pieces.put_nowait, item)

        job = _Job(np.asarray(ids, dtype=np.int32), options, deadline, deliver)
        with self._lock:
            if self._closing:
                raise NotReadyError(f"model folder {self.folder.name} is unloading")
            if self._in_flight >= self.capacity:
                raise QueueFullError(
                    f"{self._in_flight} generations in flight, the most this model takes "
                    f"(max_batch_size {self.settings.batch} + max_queue_size "
                    f"{self.settings.max_queue_size}); retry later"
                )
            self._in_flight += 1
        self.metrics.sequence_started(len(job.ids))
        self._inbox.put(job)
        return Turn(job, pieces)

    # -- the engine thread -------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._open()
        except BaseException as exc:
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop()
        except Exception:
            log.exception("generation engine for %s failed; its requests are ended", self.folder)
            self._abort_all(InferenceError("the generation engine failed; see the daemon log"))
        finally:
            self._engine = None
            self._model = None

    def _open(self) -> None:
        import onnxruntime_genai as og  # type: ignore[import-untyped]

        self._og = og
        self.paged = self.settings.provider == "cuda"
        try:
            self._model = self._build_model(og, paged=self.paged)
            self._engine = og.Engine(self._model)
        except RuntimeError as exc:
            if not self.paged:
                raise ModelLoadError(
                    f"{self.folder}: onnxruntime-genai could not load it: {exc}"
                ) from exc
            # A model not built for paged attention runs static batches on CUDA too.
            log.info("%s: no paged attention (%s); static batching", self.folder, exc)
            self.paged = False
            try:
                self._model = self._build_model(og, paged=False)
                self._engine = og.Engine(self._model)
            except RuntimeError as again:
                raise ModelLoadError(
                    f"{self.folder}: onnxruntime-genai could not load it: {again}"
                ) from again
        self.tokenizer = og.Tokenizer(self._model)
        self.context_length = _context_length(self.folder)
        self._buffer = self._engine.create_event_buffer(_EVENT_CAPACITY)

    def _build_model(self, og: Any, *, paged: bool) -> Any:
        config = og.Config(str(self.folder))
        config.clear_providers()
        if self.settings.provider != "cpu":
            config.append_provider(self.settings.provider)
        config.overlay(json.dumps(self.settings.overlay(paged)))
        return og.Model(config)

    def _loop(self) -> None:
        while True:
            busy = self._engine.has_pending_requests()
            if not self._admit(block=not busy and not self._active):
                break
            self._expire()
            if self._engine.has_pending_requests():
                self._step()
            elif self._active:
                # Turns begun but nothing left to run: finished without an event.
                self._abort_all(InferenceError("the generation engine lost a request"))

    def _admit(self, *, block: bool) -> bool:
        """Begin the turns of new requests; False once ``close`` asked the thread to end."""
        while True:
            try:
                job = self._inbox.get(block=block)
            except queue.Empty:
                return True
            block = False
            if job is None:
                self._abort_all(
                    NotReadyError("the model is unloading; the generation was cancelled")
                )
                return False
            self._begin(job)

    def _begin(self, job: _Job) -> None:
        og = self._og
        if job.cancelled or job.expired:
            self._end(job, _cancel_error(job))
            return
        try:
            request = self._engine.create_request(options=self._request_options(job))
            turn_options = og.TurnOptions(request)
            _apply(turn_options, job.options, self.paged)
            job.turn = request.begin_turn(job.ids, turn_options)
        except InvalidInputError as exc:
            self._end(job, exc)
            return
        except RuntimeError as exc:
            # onnxruntime-genai's refusals name options and lengths, never the text.
            self._end(job, InvalidInputError(f"the generation engine refused the request: {exc}"))
            return
        job.request = request
        job.stream = self.tokenizer.create_stream()
        job.stops = StopScanner(job.options.stop) if job.options.stop else None
        self._active[id(request)] = job

    def _request_options(self, job: _Job) -> Any:
        options = self._og.RequestOptions()
        if self.settings.max_session_tokens:
            options.set_max_session_tokens(self.settings.max_session_tokens)
        return options

    def _expire(self) -> None:
        for job in self._active.values():
            if (job.cancelled or job.expired) and not job.stop_matched:
                job.request.cancel_turn(job.turn)

    def _step(self) -> None:
        og = self._og
        token_flag = og.EngineEventFlags.TOKEN.value
        finished_flag = og.EngineEventFlags.TURN_FINISHED.value
        failed_flag = og.EngineEventFlags.FAILED.value
        for event in self._engine.run(self._buffer):
            job = self._active.get(id(event.request))
            if job is None:
                continue
            flags = event.flags.value
            text = ""
            if flags & token_flag and not job.stop_matched:
                text = self._token(job, event.token)
            if flags & failed_flag:
                self._finish(job, InferenceError(f"generation failed: {event.error_code.name}"))
            elif flags & finished_flag:
                self._finish(job, self._final_piece(job, text, event))
            elif text:
                job.deliver(Piece(text, prompt_tokens=len(job.ids)))

    def _token(self, job: _Job, token: int) -> str:
        now = time.monotonic()
        if job.tokens == 0:
            self.metrics.first_token(now - job.submitted)
        else:
            self.metrics.next_token(now - job.last_token_at)
        job.tokens += 1
        job.last_token_at = now
        text: str = job.stream.decode(token)
        if job.stops is None:
            return text
        text, matched = job.stops.feed(text)
        if matched:
            job.stop_matched = True
            job.request.cancel_turn(job.turn)
        return text

    def _final_piece(self, job: _Job, text: str, event: Any) -> Piece | BaseException:
        reason = _finish_reason(self._og, event.finish_reason)
        if job.stop_matched:
            reason = "stop"
        elif reason == "cancelled" and not job.cancelled and job.expired:
            return DeadlineExceededError("the deadline passed during generation")
        elif job.stops is not None:
            text += job.stops.flush()
        usage = event.usage
        prompt = usage.prompt_tokens if usage is not None else len(job.ids)
        return Piece(text, reason, prompt_tokens=prompt, completion_tokens=job.tokens)

    def _finish(self, job: _Job, result: Piece | BaseException) -> None:
        self._active.pop(id(job.request), None)
        job.request.close()
        job.request = None
        self._end(job, result)

    def _end(self, job: _Job, result: Piece | BaseException) -> None:
        job.deliver(result)
        self.metrics.sequence_ended(job.tokens)
        with self._lock:
            self._in_flight -= 1
            self._idle.notify_all()

    def _abort_all(self, error: BaseException) -> None:
        for job in list(self._active.values()):
            if job.request is not None:
                job.request.cancel_turn(job.turn)
            self._finish(job, error)
        while True:
            try:
                waiting = self._inbox.get_nowait()
            except queue.Empty:
                return
            if waiting is not None:
                self._end(waiting, error)


def _cancel_error(job: _Job) -> BaseException:
    if job.cancelled:
        return asyncio.CancelledError()
    return DeadlineExceededError("the deadline passed before the generation started")


def _apply(turn: Any, options: SamplingOptions, paged: bool) -> None:
    """Per-request sampling on an ``og.TurnOptions``. Greedy unless a temperature above
    zero (or top-p/top-k with no temperature) asks for sampling, as vLLM reads them."""
    if options.max_tokens is not None:
        turn.set_max_generated_tokens(options.max_tokens)
    if options.repetition_penalty is not None:
        turn.set_repetition_penalty(options.repetition_penalty)
    sampling = (options.temperature or 0) > 0 or (
        options.temperature is None and (options.top_p is not None or options.top_k is not None)
    )
    if options.temperature == 0:
        turn.set_do_sample(False)
    if not sampling:
        return
    turn.set_do_sample(True)
    if options.temperature is not None:
        turn.set_temperature(options.temperature)
    if options.top_p is not None:
        turn.set_top_p(options.top_p)
    if options.top_k is not None:
        turn.set_top_k(options.top_k)
    if options.seed is not None:
        if not paged:
            raise InvalidInputError(
                "a sampling seed needs the paged-attention engine (a CUDA model built for "
                "it); this model runs static batches: leave out seed, or use temperature 0"
            )
        turn.set_seed(options.seed)


def _finish_reason(og: Any, reason: Any) -> FinishReason:
    if reason in (og.FinishReason.MAX_GENERATED_TOKENS, og.FinishReason.MAX_SESSION_TOKENS):
        return "length"
    if reason == og.FinishReason.CANCELLED:
        return "cancelled"
    return "stop"


def _context_length(folder: Path) -> int:
    with (folder / "genai_config.json").open(encoding="utf-8") as f:
        config = json.load(f)
    return int(config["model"]["context_length"])


__all__ = [
    "DEFAULT_BATCH",
    "EngineSettings",
    "GenerationEngine",
    "TokenRecorder",
    "Turn",
    "genai_provider",
]
