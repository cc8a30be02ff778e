"""Bad generation requests get INVALID_ARGUMENT naming what was expected, unary and in a
stream (where one bad request does not end the stream), and prompts never reach the log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from tests._daemon import DaemonProcess
from tests.generative._client import Stream, inputs
from tests.generative.conftest import LM

SECRET = "Mrs Example, born 1 April 1950"


@pytest.fixture(scope="module")
def client(lm_daemon: DaemonProcess) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(lm_daemon.address) as c:
        yield c


def refusal(client: triton.InferenceServerClient, tensors: list[Any]) -> str:
    with pytest.raises(InferenceServerException) as caught:
        client.infer(LM, tensors)
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT", caught.value.message()
    return str(caught.value.message())


def test_prompt_plus_max_tokens_over_the_context_names_both(
    client: triton.InferenceServerClient,
) -> None:
    message = refusal(client, inputs("The patient " * 120, {"max_tokens": 50}))
    assert "context length of 256" in message and "max_tokens 50" in message


def test_bad_sampling_json(client: triton.InferenceServerClient) -> None:
    message = refusal(client, inputs("The patient", '{"max_tokens": 5,'))
    assert "sampling_parameters" in message and "JSON" in message


def test_sampling_parameters_not_an_object(client: triton.InferenceServerClient) -> None:
    assert "JSON object" in refusal(client, inputs("The patient", "[1, 2]"))


def test_unknown_sampling_key_is_named(client: triton.InferenceServerClient) -> None:
    message = refusal(client, inputs("The patient", {"max_tokens": 5, "best_of": 2}))
    assert "'best_of'" in message and "max_tokens" in message


@pytest.mark.parametrize(
    ("sampling", "key"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"stop": [""]}, "stop"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
    ],
)
def test_out_of_range_sampling_values(
    client: triton.InferenceServerClient, sampling: dict[str, Any], key: str
) -> None:
    assert f"sampling_parameters.{key}" in refusal(client, inputs("The patient", sampling))


def test_wrong_datatype_names_the_expected_one(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("text_input", [1], "INT32")
    tensor.set_data_from_numpy(np.array([7], dtype=np.int32))
    message = refusal(client, [tensor])
    assert "text_input" in message and "BYTES" in message and "INT32" in message


def test_unknown_input_and_missing_prompt(client: triton.InferenceServerClient) -> None:
    extra = triton.InferInput("prompt", [1], "BYTES")
    extra.set_data_from_numpy(np.array([b"x"], dtype=np.object_))
    assert "'prompt'" in refusal(client, [*inputs("The patient"), extra])
    only_sampling = inputs("The patient", {"max_tokens": 4})[1:]
    assert "missing input 'text_input'" in refusal(client, only_sampling)


def test_a_bad_request_in_a_stream_gets_its_error_and_the_stream_goes_on(
    client: triton.InferenceServerClient,
) -> None:
    with Stream(client) as stream:
        stream.send("bad", inputs("The patient", {"nope": 1}, stream=True))
        bad = stream.collect(["bad"])["bad"]
        stream.send("good", inputs("The patient", {"max_tokens": 4}, stream=True))
        good = stream.collect(["good"])["good"]
    assert "INVALID_ARGUMENT" in bad.error and "'nope'" in bad.error
    assert good.text and good.finals[-1]


def test_prompts_and_texts_stay_out_of_the_log(
    client: triton.InferenceServerClient, lm_daemon: DaemonProcess
) -> None:
    client.infer(LM, inputs(SECRET, {"max_tokens": 4}))
    refusal(client, inputs(SECRET, {"max_tokens": 4, "bogus": True}))
    assert "Mrs Example" not in lm_daemon.log_text()
