"""The OpenAI-compatible routes of a real daemon, through the official ``openai`` client
(embeddings and models) and raw requests (errors, OpenAI's error body)."""

from __future__ import annotations

import json

import numpy as np
import openai
import pytest

from tests._daemon import DaemonProcess
from tests.http.test_v2 import raw
from tests.models import ENCODER_SPECIALS, ENCODER_WORDS, encoder_reference

TEXTS = [
    "The patient has a fever and cough",
    "chest pain",
    "no history of diabetes, blood pressure is normal",
]


@pytest.fixture
def client(http_daemon: DaemonProcess) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"http://{http_daemon.http_address}/v1", api_key="unused", max_retries=0
    )


def vectors(response: openai.types.CreateEmbeddingResponse) -> np.ndarray:
    return np.asarray([d.embedding for d in sorted(response.data, key=lambda d: d.index)])


def openai_error(body: bytes) -> dict[str, object]:
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


def test_models_lists_the_embedding_models_only(client: openai.OpenAI) -> None:
    names = {m.id for m in client.models.list()}
    assert names == {"encoder", "encoder_cls", "packaged_encoder"}
    assert client.models.retrieve("encoder").owned_by == "appliance"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("breast_cancer")


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_are_mean_pooled_over_the_mask_and_normalised(
    client: openai.OpenAI, encoding: str
) -> None:
    # base64 is what the client asks for when no encoding_format is given.
    kwargs = {"encoding_format": "float"} if encoding == "float" else {}
    response = client.embeddings.create(model="encoder", input=TEXTS, **kwargs)  # type: ignore[arg-type]
    got = vectors(response)
    # Padded to the longest text in one batch, yet equal to each text embedded alone.
    np.testing.assert_allclose(got, encoder_reference(TEXTS), rtol=1e-5, atol=1e-6)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert response.model == "encoder"
    # [CLS] and [SEP] around each text's words ("," is a token of its own).
    assert response.usage.prompt_tokens == (7 + 2) + (2 + 2) + (9 + 2)


def test_one_text_and_token_ids(client: openai.OpenAI) -> None:
    one = vectors(client.embeddings.create(model="encoder", input="chest pain"))
    np.testing.assert_allclose(one, encoder_reference(["chest pain"]), rtol=1e-5, atol=1e-6)
    # The same text as token ids: [CLS] chest pain [SEP].
    first = len(ENCODER_SPECIALS)
    chest, pain = (first + ENCODER_WORDS.index(w) for w in ("chest", "pain"))
    ids = client.embeddings.create(model="encoder", input=[[2, chest, pain, 3]])
    np.testing.assert_allclose(vectors(ids), one, rtol=1e-6)


def test_a_folder_with_sentence_transformers_files_is_pooled_as_they_say(
    client: openai.OpenAI,
) -> None:
    got = vectors(client.embeddings.create(model="encoder_cls", input=TEXTS))
    np.testing.assert_allclose(
        got, encoder_reference(TEXTS, pooling="cls", normalize=False), rtol=1e-5, atol=1e-6
    )


def test_an_embedding_package_is_pooled_as_its_manifest_says(client: openai.OpenAI) -> None:
    got = vectors(client.embeddings.create(model="packaged_encoder", input=TEXTS))
    expected = encoder_reference(TEXTS, pooling="cls", normalize=False, seed=11)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_more_inputs_than_a_batch_are_split_and_kept_in_order(client: openai.OpenAI) -> None:
    texts = [f"{TEXTS[i % 3]} {'mild ' * (i % 5)}" for i in range(70)]  # max batch is 32
    got = vectors(client.embeddings.create(model="encoder", input=texts))
    np.testing.assert_allclose(got, encoder_reference(texts), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "param", "expected"),
    [
        ({"model": "nope", "input": "x"}, 404, None, "no model named 'nope'"),
        (
            {"model": "breast_cancer", "input": "x"},
            400,
            "model",
            "model 'breast_cancer' is not an embedding model",
        ),
        ({"model": "encoder", "input": ""}, 400, None, "expected a non-empty text"),
        ({"model": "encoder", "input": []}, 400, "input", "expected 1 to 2048 inputs"),
        ({"model": "encoder", "input": "pain " * 600}, 400, None, "more than the 512"),
        ({"model": "encoder", "input": [[2, 999]]}, 400, None, "outside the vocabulary"),
        ({"model": "encoder", "input": "x", "dimensions": 4}, 400, "dimensions", "gives 8"),
        ({"model": "encoder", "input": "x", "colour": "red"}, 400, "colour", "unknown field"),
        ({"input": "x"}, 400, "model", "required field is missing"),
    ],
    ids=[
        "unknown-model",
        "not-embedding",
        "empty",
        "no-inputs",
        "too-long",
        "bad-id",
        "dimensions",
        "unknown-field",
        "no-model",
    ],
)
def test_embedding_errors_use_openai_s_body_and_status(
    http_daemon: DaemonProcess,
    body: dict[str, object],
    status: int,
    param: str | None,
    expected: str,
) -> None:
    code, _, answer = raw(http_daemon, "POST", "/v1/embeddings", json.dumps(body).encode())
    assert code == status, answer
    error = openai_error(answer)
    assert expected in str(error["message"])
    assert error["param"] == param
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")


def test_the_client_raises_its_own_exception_classes(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="x")
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="encoder", input="x", dimensions=3)
    assert "dimensions" in str(caught.value)


def test_bad_json_and_unknown_routes_get_openai_s_body(http_daemon: DaemonProcess) -> None:
    code, _, answer = raw(http_daemon, "POST", "/v1/embeddings", b'{"model": ')
    assert code == 400 and "expected a JSON object" in str(openai_error(answer)["message"])
    code, _, answer = raw(http_daemon, "GET", "/v1/files")
    assert code == 404 and openai_error(answer)["type"] == "not_found_error"


@pytest.mark.parametrize(
    ("path", "body", "param", "expected"),
    [
        ("/v1/completions", {"model": "m", "prompt": "p", "n": 2}, "n", "only n = 1"),
        ("/v1/completions", {"model": "m", "prompt": "p", "echo": True}, "echo", "echo"),
        ("/v1/completions", {"model": "m", "prompt": "p", "logprobs": 2}, "logprobs", "log prob"),
        (
            "/v1/completions",
            {"model": "m", "prompt": "p", "max_tokens": 0},
            "max_tokens",
            "equal to 1 (got 0)",
        ),
        ("/v1/completions", {"model": "m"}, "prompt", "required field is missing"),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [{}]},
            "tools",
            "tool calling is not supported",
        ),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [{"role": "tool", "content": "hi"}]},
            "messages[0].role",
            "Input should be",
        ),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 3},
            "temperature",
            "(got 3)",
        ),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [], "stream": True},
            "messages",
            "at least 1",
        ),
        (
            "/v1/chat/completions",
            {
                "model": "m",
                "messages": [{"role": "user", "content": "hi"}],
                "response_format": {"type": "json_object"},
            },
            "response_format.type",
            "Input should be 'text'",
        ),
    ],
    ids=[
        "n",
        "echo",
        "logprobs",
        "max-tokens",
        "no-prompt",
        "tools",
        "tool-role",
        "temperature",
        "no-messages",
        "json-format",
    ],
)
def test_unsupported_generation_fields_are_refused_naming_them(
    http_daemon: DaemonProcess, path: str, body: dict[str, object], param: str, expected: str
) -> None:
    code, _, answer = raw(http_daemon, "POST", path, json.dumps(body).encode())
    assert code == 400, answer
    error = openai_error(answer)
    assert error["param"] == param
    assert expected in str(error["message"])


def test_completions_without_a_generative_model_are_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.completions.create(model="encoder", prompt="hello")
    assert "generative models served: none" in str(caught.value)


def test_texts_never_reach_the_log(http_daemon: DaemonProcess, client: openai.OpenAI) -> None:
    secret = "zebracorn-haemangioma"
    client.embeddings.create(model="encoder", input=[f"the patient {secret}"])
    raw(
        http_daemon,
        "POST",
        "/v1/embeddings",
        json.dumps({"model": "encoder", "input": [f"x {secret}", ""]}).encode(),
    )
    raw(
        http_daemon,
        "POST",
        "/v1/chat/completions",
        json.dumps({"model": "m", "messages": [{"role": "tool", "content": secret}]}).encode(),
    )
    log = http_daemon.log_text()
    assert '"rpc": "POST /v1/embeddings"' in log
    assert secret not in log
