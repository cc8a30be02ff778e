"""Scoring a generative model's greedy answers against references (token F1, exact
match), per group. The model here is a small one written in the test that implements
``appliance.http.generative``'s ``GenerativeModel`` protocol, so the scores are known by
hand: it answers from a table and records the options asked (``test_gate_generative``
runs the gate on the real engine)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.http.generative import (
    ChatMessage,
    Generation,
    GenerativeModel,
    Piece,
    SamplingOptions,
)
from appliance.quality.generation import (
    evaluate_generation,
    normalized_tokens,
    read_prompt_data,
)

ANSWERS = {
    "Dose of paracetamol for adults?": "1 g every six hours",
    "First-line test for a suspected DVT?": "A D-dimer test.",
    "Normal adult resting heart rate?": "about 60 to 100",
}


class TableModel:
    """Answers each prompt from ``ANSWERS``; remembers the sampling options it got."""

    name = "table"
    version = 1

    def __init__(self) -> None:
        self.options: list[SamplingOptions] = []

    def apply_chat_template(self, messages: Sequence[ChatMessage]) -> str:
        return "\n".join(m.content for m in messages)

    async def generate(
        self, prompt: str, options: SamplingOptions, deadline: float | None
    ) -> Generation:
        self.options.append(options)
        text = ANSWERS[prompt]
        return Generation(text, "stop", len(prompt.split()), len(text.split()))

    async def stream(
        self, prompt: str, options: SamplingOptions, deadline: float | None
    ) -> AsyncIterator[Piece]:
        yield Piece((await self.generate(prompt, options, deadline)).text, "stop")


def prompts_csv(path: Path) -> Path:
    path.write_text(
        "prompt,reference,group\n"
        "Dose of paracetamol for adults?,1 g every 6 hours,pharmacy\n"
        "First-line test for a suspected DVT?,d-dimer test,emergency\n"
        "Normal adult resting heart rate?,60 to 100 beats per minute,emergency\n"
    )
    return path


def test_answers_are_greedy_and_scored_per_group(tmp_path: Path) -> None:
    model = TableModel()
    protocol: GenerativeModel = model  # it implements the serving protocol
    data = read_prompt_data(prompts_csv(tmp_path / "prompts.csv"))

    f1 = asyncio.run(evaluate_generation(protocol, data, "token_f1"))
    exact = asyncio.run(evaluate_generation(protocol, data, "exact_match"))

    assert {o.temperature for o in model.options} == {0.0}
    # "1 g every six hours" vs "1 g every 6 hours": 4 of 5 tokens both ways.
    # "A D-dimer test." vs "d-dimer test": normalised both are ["ddimer", "test"].
    # "about 60 to 100" vs "60 to 100 beats per minute": 3/4 precision, 3/6 recall.
    heart = 2 * 0.75 * 0.5 / 1.25
    assert f1.groups["pharmacy"] == (1, pytest.approx(0.8))
    assert f1.groups["emergency"] == (2, pytest.approx((1.0 + heart) / 2))
    assert f1.overall == pytest.approx((0.8 + 1.0 + heart) / 3)
    assert exact.overall == pytest.approx(1 / 3) and exact.groups["pharmacy"][1] == 0.0


def test_normalisation_and_bad_data(tmp_path: Path) -> None:
    assert normalized_tokens("The  D-dimer, an assay.") == ["ddimer", "assay"]
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,answer\nq,a\n")
    with pytest.raises(ConfigError, match="expected a 'reference' column"):
        read_prompt_data(bad)
    data = read_prompt_data(prompts_csv(tmp_path / "prompts.csv"))
    with pytest.raises(ConfigError, match="does not score a generative model"):
        asyncio.run(evaluate_generation(TableModel(), data, "accuracy"))
