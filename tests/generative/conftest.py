"""The generative tests' daemon: the tiny int4 Llama (``tests._lm``) as a Triton-style
``<model>/1/`` folder beside the default model, and in-process greedy references."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests._daemon import DaemonProcess
from tests._lm import copy_model, genai_model

LM = "lm"
#: Room for a few requests waiting beyond the running batch (the queue-full test fills it).
MAX_QUEUE = 12


@pytest.fixture(scope="session")
def lm_folder() -> Path:
    return genai_model()


@pytest.fixture(scope="session")
def lm_repository(tmp_path_factory: pytest.TempPathFactory, lm_folder: Path) -> Path:
    root = tmp_path_factory.mktemp("generative") / "repository"
    copy_model(lm_folder, root / LM / "1")
    return root


@pytest.fixture(scope="session")
def lm_daemon(
    tmp_path_factory: pytest.TempPathFactory, lm_repository: Path
) -> Iterator[DaemonProcess]:
    config = {
        "repository": {"path": lm_repository, "serve_default_model": False},
        "models": {LM: {"max_queue_size": MAX_QUEUE}},
    }
    with DaemonProcess(tmp_path_factory.mktemp("lm-daemon"), config) as daemon:
        yield daemon


def greedy(folder: Path, prompt: str, max_tokens: int) -> str:
    """onnxruntime-genai's own greedy continuation, in this process (the reference)."""
    import onnxruntime_genai as og

    model = og.Model(str(folder))
    tokenizer = og.Tokenizer(model)
    params = og.GeneratorParams(model)
    ids = tokenizer.encode(prompt)
    params.set_search_options(do_sample=False, max_length=len(ids) + max_tokens)
    generator = og.Generator(model, params)
    generator.append_tokens(np.asarray(ids, dtype=np.int32))
    tokens: list[int] = []
    while not generator.is_done() and len(tokens) < max_tokens:
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
    return str(tokenizer.decode(np.asarray(tokens, dtype=np.int32)))
