"""A generative model over V2 gRPC, driven by the real ``tritonclient.grpc``: metadata,
unary ModelInfer (the whole text), ModelStreamInfer with Triton's decoupled semantics,
and texts equal to onnxruntime-genai's own greedy output for the same folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from tests._daemon import DaemonProcess
from tests.generative._client import Stream, inputs
from tests.generative.conftest import LM, greedy

PROMPTS = [
    "The patient",
    "Patient presents with",
    "The wound was",
    "Blood pressure",
    "Discharge plan:",
    "She reports",
    "Follow-up in",
    "No known",
]
MAX_TOKENS = 24


@pytest.fixture(scope="module")
def client(lm_daemon: DaemonProcess) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(lm_daemon.address) as c:
        yield c


@pytest.fixture(scope="module")
def references(lm_folder: Path) -> dict[str, str]:
    return {p: greedy(lm_folder, p, MAX_TOKENS) for p in PROMPTS}


def test_metadata_names_the_vllm_backend_tensors(client: triton.InferenceServerClient) -> None:
    meta = client.get_model_metadata(LM)
    assert meta.platform == "onnxruntime_genai"
    assert [(t.name, t.datatype) for t in meta.inputs][:3] == [
        ("text_input", "BYTES"),
        ("stream", "BOOL"),
        ("sampling_parameters", "BYTES"),
    ]
    assert {t.name for t in meta.outputs} == {
        "text_output",
        "finish_reason",
        "num_input_tokens",
        "num_output_tokens",
    }
    assert client.is_model_ready(LM)
    index = {m.name: m.state for m in client.get_model_repository_index().models}
    assert index == {LM: "READY"}


def test_unary_text_is_the_prompt_and_the_greedy_continuation(
    client: triton.InferenceServerClient, references: dict[str, str]
) -> None:
    for prompt in PROMPTS[:3]:
        result = client.infer(LM, inputs(prompt, {"max_tokens": MAX_TOKENS, "temperature": 0}))
        assert result.as_numpy("text_output")[0].decode() == prompt + references[prompt]


def test_unary_counts_and_finish_reason_when_asked(
    client: triton.InferenceServerClient, references: dict[str, str]
) -> None:
    result = client.infer(
        LM,
        inputs(
            "The patient",
            {"max_tokens": 2},
            exclude_input_in_output=True,
            return_finish_reason=True,
            return_num_input_tokens=True,
            return_num_output_tokens=True,
        ),
    )
    assert result.as_numpy("finish_reason")[0] == b"length"
    assert result.as_numpy("num_output_tokens")[0] == 2
    assert result.as_numpy("num_input_tokens")[0] >= 2
    text = result.as_numpy("text_output")[0].decode()
    assert references["The patient"].startswith(text) and text


def test_stream_true_on_model_infer_names_model_stream_infer(
    client: triton.InferenceServerClient,
) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer(LM, inputs("The patient", stream=True))
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "ModelStreamInfer" in caught.value.message()


def test_stream_sends_one_response_per_piece_then_an_empty_final_one(
    client: triton.InferenceServerClient, references: dict[str, str]
) -> None:
    with Stream(client) as stream:
        stream.send("a", inputs("The patient", {"max_tokens": MAX_TOKENS}, stream=True))
        answer = stream.collect(["a"])["a"]
    assert answer.text == references["The patient"]  # only the new text when streaming
    assert len(answer.texts) >= 2
    assert answer.finals == [False] * len(answer.texts) + [True]
    assert answer.outputs[-1] == {}  # the empty final response carries no outputs


def test_without_empty_final_the_last_piece_is_final(
    client: triton.InferenceServerClient, references: dict[str, str]
) -> None:
    with Stream(client) as stream:
        stream.send(
            "b",
            inputs("Patient presents with", {"max_tokens": MAX_TOKENS}, stream=True),
            empty_final=False,
        )
        answer = stream.collect(["b"])["b"]
    assert answer.text == references["Patient presents with"]
    assert answer.finals[-1] and not any(answer.finals[:-1])
    assert all(outputs for outputs in answer.outputs)


def test_eight_requests_interleave_on_one_stream(
    client: triton.InferenceServerClient, references: dict[str, str]
) -> None:
    ids = [f"r{i}" for i in range(len(PROMPTS))]
    with Stream(client) as stream:
        for request_id, prompt in zip(ids, PROMPTS, strict=True):
            stream.send(request_id, inputs(prompt, {"max_tokens": MAX_TOKENS}, stream=True))
        answers = stream.collect(ids)
        order = stream.order
    for request_id, prompt in zip(ids, PROMPTS, strict=True):
        assert answers[request_id].text == references[prompt], prompt
    # Side by side, not one after the other: some request's pieces came between another's
    # first and last (the engine batched them in one step).
    spans = {rid: (order.index(rid), len(order) - 1 - order[::-1].index(rid)) for rid in ids}
    assert any(a != b and spans[a][0] < spans[b][0] < spans[a][1] for a in ids for b in ids), order


def test_a_stream_request_that_does_not_stream_gets_the_whole_text(
    client: triton.InferenceServerClient, references: dict[str, str]
) -> None:
    with Stream(client) as stream:
        stream.send("w", inputs("The wound was", {"max_tokens": MAX_TOKENS}), empty_final=False)
        answer = stream.collect(["w"])["w"]
    assert answer.texts == ["The wound was" + references["The wound was"]]
    assert answer.finals == [True]


def test_statistics_count_generation_requests(client: triton.InferenceServerClient) -> None:
    client.infer(LM, inputs("The patient", {"max_tokens": 2}))
    stats = client.get_inference_statistics(LM).model_stats
    assert [s.name for s in stats] == [LM]
    assert stats[0].inference_stats.success.count >= 1
