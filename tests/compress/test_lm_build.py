"""The tiny-Llama script and the onnxruntime-genai builder wrapper, run for real."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime_genai as og
import pytest

from compress.errors import CompressError
from compress.lm import GenaiBuild, LlamaSpec, build_genai, build_llama
from tests._lm import genai_model


def test_the_tiny_llama_builds_to_an_int4_folder_that_generates() -> None:
    folder = genai_model()
    config = json.loads((folder / "genai_config.json").read_text())
    assert config["model"]["type"] == "llama"
    model = og.Model(str(folder))
    tokenizer = og.Tokenizer(model)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=32, do_sample=False)
    generator = og.Generator(model, params)
    prompt = tokenizer.encode("Patient reports")
    generator.append_tokens(prompt)
    while not generator.is_done():
        generator.generate_next_token()
    sequence = np.asarray(generator.get_sequence(0))
    assert len(sequence) > len(prompt)


def test_training_is_deterministic(tmp_path: Path) -> None:
    spec = LlamaSpec(hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64, steps=3)
    a = build_llama(spec, tmp_path / "a")
    b = build_llama(spec, tmp_path / "b")
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()


def test_a_folder_the_builder_cannot_read_is_a_compress_error(tmp_path: Path) -> None:
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text('{"architectures": ["GPT2LMHeadModel"]}')
    with pytest.raises(CompressError, match="builder could not build hf"):
        build_genai(tmp_path / "hf", tmp_path / "out", GenaiBuild())


def test_a_benchmark_shape_has_the_model_vocab_and_greedy_prints_every_token(
    tmp_path: Path,
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = LlamaSpec(
        hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64, model_vocab=2048,
        printable_only=True,
    )  # fmt: skip
    folder = build_llama(spec, tmp_path / "hf")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.config.vocab_size == 2048 > len(tokenizer)
    prompt = torch.tensor([tokenizer.encode("Patient reports chest pain")])
    out = model.generate(prompt, max_new_tokens=40, do_sample=False)
    new = out[0, prompt.shape[1] :].tolist()
    assert len(new) == 40  # EOS is silenced too: greedy never stops early
    assert all(t < len(tokenizer) and t not in tokenizer.all_special_ids for t in new)
    assert all(tokenizer.decode([t]).strip() and "\ufffd" not in tokenizer.decode([t]) for t in new)
