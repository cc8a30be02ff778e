"""The official ``openai`` client against the real daemon's generative model: completions
and chat, streaming and not, usage, stop, max_tokens, and what is refused."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests._daemon import DaemonProcess
from tests.generative.conftest import LM, greedy


@pytest.fixture(scope="module")
def client(lm_daemon: DaemonProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://{lm_daemon.http_address}/v1", api_key="unused")


def test_models_lists_the_generative_model(client: openai.OpenAI) -> None:
    assert LM in [m.id for m in client.models.list()]


def test_completion_is_the_greedy_continuation_with_usage(
    client: openai.OpenAI, lm_folder: Path
) -> None:
    done = client.completions.create(model=LM, prompt="The patient", max_tokens=24, temperature=0)
    choice = done.choices[0]
    assert choice.text == greedy(lm_folder, "The patient", 24)
    assert choice.finish_reason == "stop"
    assert done.usage is not None
    assert done.usage.completion_tokens > 0 and done.usage.prompt_tokens >= 2
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens


def test_max_tokens_ends_with_finish_reason_length(client: openai.OpenAI) -> None:
    done = client.completions.create(model=LM, prompt="The wound was", max_tokens=3)
    assert done.choices[0].finish_reason == "length"
    assert done.usage is not None and done.usage.completion_tokens == 3


def test_stop_string_cuts_the_text(client: openai.OpenAI, lm_folder: Path) -> None:
    full = greedy(lm_folder, "The wound was", 40)
    stop = full.split()[2]  # a word in the middle of the continuation
    done = client.completions.create(model=LM, prompt="The wound was", max_tokens=40, stop=[stop])
    assert done.choices[0].text == full[: full.index(stop)]
    assert done.choices[0].finish_reason == "stop"


def test_streamed_completion_joins_to_the_whole_text(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=LM, prompt="Blood pressure", max_tokens=24)
    chunks = list(
        client.completions.create(
            model=LM,
            prompt="Blood pressure",
            max_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert reasons[-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]


def test_chat_uses_the_folder_template(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model=LM,
        messages=[{"role": "user", "content": "Summarise the note."}],
        max_tokens=16,
    )
    message = answer.choices[0].message
    assert message.role == "assistant"
    assert answer.usage is not None and answer.usage.prompt_tokens > 5  # the template's tokens
    streamed = client.chat.completions.create(
        model=LM,
        messages=[{"role": "user", "content": "Summarise the note."}],
        max_tokens=16,
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == message.content


def test_n_above_one_is_refused_with_openai_error_body(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=LM, prompt="The patient", max_tokens=4, n=2)
    assert "n" in str(caught.value)


def test_prompt_over_the_context_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=LM, prompt="The patient " * 120, max_tokens=50)
    assert "context length" in str(caught.value)


def test_a_generative_name_on_embeddings_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError):
        client.embeddings.create(model=LM, input="The patient")
