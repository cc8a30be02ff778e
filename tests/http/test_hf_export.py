"""A Hugging Face encoder folder served as it is: ``model.onnx`` (exported with
torch.onnx) beside the tokenizer files ``save_pretrained`` writes, answering
``/v1/embeddings`` with what sentence-transformers computes in PyTorch (mask-aware
mean of the last hidden state, L2-normalised), for texts of different lengths in one
request. A tiny random BERT with the real MiniLM tokenizer (offline) keeps it fast."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from compress.export import export_huggingface
from compress.minilm import minilm_folder
from tests._daemon import DaemonProcess

NOTES = [
    "Patient reports chest pain on exertion.",
    "No evidence of fracture on X-ray; follow-up in two weeks.",
    "Creatinine mildly raised since admission, metformin 500 mg paused.",
]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BertModel, object]:
    work = tmp_path_factory.mktemp("hf-encoder")
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,  # type: ignore[no-untyped-call]
        num_attention_heads=4,
        intermediate_size=64,
    )
    model = BertModel(config).eval()  # type: ignore[no-untyped-call]
    tokenizer = AutoTokenizer.from_pretrained(  # type: ignore[no-untyped-call]
        minilm_folder(), local_files_only=True
    )
    folder = work / "repository" / "notes" / "1"
    folder.mkdir(parents=True)
    export_huggingface(model, folder / "model.onnx", "feature-extraction")
    tokenizer.save_pretrained(folder)
    return work, model, tokenizer


@pytest.fixture(scope="module")
def daemon(encoder: tuple[Path, BertModel, object]) -> Iterator[DaemonProcess]:
    with DaemonProcess(encoder[0]) as running:
        yield running


def sentence_transformers_way(model: BertModel, tokenizer: object, texts: list[str]) -> np.ndarray:
    batch = tokenizer(texts, padding=True, return_tensors="pt")  # type: ignore[operator]
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # (batch, tokens, dim)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=1).numpy()


@pytest.mark.slow
def test_the_folder_serves_sentence_embeddings_like_pytorch(
    daemon: DaemonProcess, encoder: tuple[Path, BertModel, object]
) -> None:
    _, model, tokenizer = encoder
    client = openai.OpenAI(base_url=f"http://{daemon.http_address}/v1", api_key="-", max_retries=0)
    assert [m.id for m in client.models.list()] == ["notes"]
    response = client.embeddings.create(model="notes", input=NOTES)
    got = np.asarray([d.embedding for d in response.data], dtype=np.float32)
    expected = sentence_transformers_way(model, tokenizer, NOTES)
    np.testing.assert_allclose(got, expected, atol=2e-5)
    tokens = tokenizer(NOTES)["input_ids"]  # type: ignore[operator]
    assert response.usage.prompt_tokens == sum(len(t) for t in tokens)
