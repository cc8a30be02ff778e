"""The engine thread in process, on the real onnxruntime-genai engine: a full engine
refuses at once, a cancelled or late generation frees its sequence, stop strings cut
across pieces, the provider follows the box's choice, the sampling JSON is checked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.errors import DeadlineExceededError, InvalidInputError, QueueFullError
from appliance.generative import EngineSettings, GenerativeVersion, genai_provider, parse_sampling
from appliance.generative._stops import StopScanner
from appliance.generative.types import SamplingOptions
from appliance.monitoring.metrics import GenerationMetrics
from appliance.runtime.providers import CPU, CUDA, TENSORRT, ProviderChoice
from tests.generative.conftest import greedy

LONG = SamplingOptions(max_tokens=200, ignore_eos=True)


@pytest.fixture(scope="module")
def lm(lm_folder: Path) -> Iterator[GenerativeVersion]:
    metrics = GenerationMetrics()
    model = GenerativeVersion.load(
        "lm", 1, lm_folder, EngineSettings(max_queue_size=2), metrics=metrics
    )
    yield model
    model.drain(10)


def test_generate_is_greedy_by_default(lm: GenerativeVersion, lm_folder: Path) -> None:
    done = asyncio.run(lm.generate("The patient", SamplingOptions(max_tokens=24), None))
    assert done.text == greedy(lm_folder, "The patient", 24)
    assert done.finish_reason == "stop" and done.prompt_tokens >= 2


def test_a_full_engine_refuses_the_next_request_at_once(lm: GenerativeVersion) -> None:
    async def scenario() -> None:
        ids = lm.tokenize("The patient")
        turns = [lm.engine.submit(ids, LONG, None) for _ in range(lm.engine.capacity)]
        start = time.monotonic()
        with pytest.raises(QueueFullError, match="max_queue_size 2"):
            await lm.generate("The patient", LONG, None)
        assert time.monotonic() - start < 1.0
        for turn in turns:
            turn.cancel()
        for turn in turns:  # each ends: cancelled at the next step
            while not turn.done:
                try:
                    await turn.next()
                except asyncio.CancelledError:
                    break

    asyncio.run(scenario())
    _wait_idle(lm)


def test_a_closed_stream_frees_its_sequence(lm: GenerativeVersion) -> None:
    metrics = lm.metrics
    assert isinstance(metrics, GenerationMetrics)
    before = metrics.generated_tokens

    async def scenario() -> None:
        pieces = lm.stream("The patient", LONG, None)
        await anext(pieces)
        await pieces.aclose()

    asyncio.run(scenario())
    _wait_idle(lm)
    assert metrics.active == 0
    assert metrics.generated_tokens - before < 200


def test_a_deadline_during_generation_cancels_it(lm: GenerativeVersion) -> None:
    long = SamplingOptions(max_tokens=240, ignore_eos=True)
    # How long the whole generation takes on this machine; the deadline falls at a
    # quarter of it, so it expires while tokens are being generated, fast box or slow.
    start = time.monotonic()
    asyncio.run(lm.generate("The patient", long, None))
    whole = time.monotonic() - start
    with pytest.raises(DeadlineExceededError):
        asyncio.run(lm.generate("The patient", long, time.monotonic() + whole / 4))
    _wait_idle(lm)


def test_a_seed_needs_the_paged_engine(lm: GenerativeVersion) -> None:
    sampled = SamplingOptions(max_tokens=4, temperature=0.8, seed=3)
    with pytest.raises(InvalidInputError, match="seed"):
        asyncio.run(lm.generate("The patient", sampled, None))
    # Greedy needs no seed: one sent anyway is harmless.
    asyncio.run(lm.generate("The patient", SamplingOptions(max_tokens=4, seed=3), None))


def test_sampling_runs_with_top_k_and_top_p(lm: GenerativeVersion) -> None:
    sampled = SamplingOptions(max_tokens=8, temperature=1.0, top_k=20, top_p=0.9)
    done = asyncio.run(lm.generate("The patient", sampled, None))
    assert done.completion_tokens >= 1


def _wait_idle(lm: GenerativeVersion) -> None:
    deadline = time.monotonic() + 10
    while lm.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lm.in_flight == 0


@pytest.mark.parametrize(
    ("pieces", "stop", "shown", "matched"),
    [
        (["The pat", "ient is", " well"], "ient", "The pat", True),
        (["no", " stop", " here"], "xyz", "no stop here", False),
        (["dis", "ch", "arge"], "discharge", "", True),
        (["a", "b"], "bc", "ab", False),  # "b" held back, then released at the end
    ],
)
def test_stop_strings_are_matched_across_pieces(
    pieces: list[str], stop: str, shown: str, matched: bool
) -> None:
    scanner = StopScanner([stop])
    text, hit = "", False
    for piece in pieces:
        out, hit = scanner.feed(piece)
        text += out
        if hit:
            break
    if not hit:
        text += scanner.flush()
    assert (text, hit) == (shown, matched)


@pytest.mark.parametrize(
    ("names", "provider"),
    [
        ((CPU,), "cpu"),
        ((CUDA, CPU), "cuda"),
        ((TENSORRT, CUDA, CPU), "cuda"),
    ],
)
def test_the_engine_provider_follows_the_box_choice(names: tuple[str, ...], provider: str) -> None:
    assert genai_provider(ProviderChoice(names, "test")) == provider


def test_settings_pick_the_batching_the_provider_supports() -> None:
    cpu = EngineSettings()
    assert cpu.overlay(paged=False) == {"engine": {"static_batching": {"max_batch_size": 4}}}
    cuda = EngineSettings(provider="cuda", kv_cache_fraction=0.5)
    assert cuda.overlay(paged=True) == {
        "engine": {"dynamic_batching": {"max_batch_size": 16, "gpu_utilization_factor": 0.5}}
    }


def test_sampling_json_is_parsed_and_checked() -> None:
    options = parse_sampling('{"max_tokens": "12", "temperature": 0.5, "stop": "."}')
    assert (options.max_tokens, options.temperature, options.stop) == (12, 0.5, (".",))
    with pytest.raises(InvalidInputError, match="max_tokens"):
        parse_sampling('{"max_tokens": 1.5}')
    with pytest.raises(InvalidInputError, match="unknown key 'n'"):
        parse_sampling('{"n": 2}')
    with pytest.raises(InvalidInputError, match="ignore_eos"):
        parse_sampling('{"ignore_eos": 3}')


def test_an_option_the_bindings_cannot_take_is_refused_and_the_engine_lives_on(
    lm: GenerativeVersion,
) -> None:
    huge = SamplingOptions(max_tokens=4, temperature=1.0, top_k=2**40)
    with pytest.raises(InvalidInputError, match="out of its range"):
        asyncio.run(lm.generate("The patient", huge, None))
    done = asyncio.run(lm.generate("The patient", SamplingOptions(max_tokens=4), None))
    assert done.completion_tokens >= 1
    with pytest.raises(InvalidInputError, match="top_k"):
        parse_sampling('{"top_k": 55297659727405880}')
