"""The HTTP tests' daemon: one repository with the default model, the tiny encoder as a
Triton-style folder (plain, and with sentence-transformers files asking for the CLS
token and no normalisation), and an embedding package that states its own pooling."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.package import Manifest, build_package, specs_from_onnx, unpack_package
from appliance.package.keys import generate_keypair
from appliance.package.manifest import Embedding
from appliance.repository import EMBEDDED_ROOT
from tests._daemon import DaemonProcess
from tests.models import encoder_model, slow_model

#: Small enough to exceed with a hand-made body, large enough for every test request.
MAX_MESSAGE_BYTES = 64 * 1024


def sentence_transformers_files(folder: Path, *, cls: bool, normalize: bool) -> None:
    """``modules.json`` and ``1_Pooling/config.json`` as sentence-transformers writes them."""
    modules: list[dict[str, Any]] = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": cls, "pooling_mode_mean_tokens": not cls})
    )


def embedding_package(work: Path, repository: Path) -> None:
    """A signed ``task: embedding`` package (CLS pooling, not normalised), unpacked in the
    repository as a push would leave it."""
    source = work / "package-source"
    encoder_model(source, seed=11)
    keys = work / "keys"
    generate_keypair(keys)
    inputs, outputs = specs_from_onnx(source / "model.onnx")
    manifest = Manifest(
        name="packaged_encoder",
        version=3,
        task="embedding",
        inputs=inputs,
        outputs=outputs,
        embedding=Embedding(pooling="cls", normalize=False),
    )
    apkg = build_package(
        source / "model.onnx",
        manifest,
        keys / "private.pem",
        work / "dist",
        extra_files=[source / "tokenizer.json"],
    )
    unpack_package(apkg, repository / "packaged_encoder" / "3", trusted_keys=[keys / "public.pem"])


def build_http_repository(work: Path) -> Path:
    repository = work / "repository"
    shutil.copytree(EMBEDDED_ROOT / "breast_cancer", repository / "breast_cancer")
    encoder_model(repository / "encoder" / "1")
    cls_folder = repository / "encoder_cls" / "1"
    encoder_model(cls_folder)
    sentence_transformers_files(cls_folder, cls=True, normalize=False)
    slow_model(repository / "slow" / "1" / "model.onnx", depth=32)
    embedding_package(work, repository)
    return repository


@pytest.fixture(scope="session")
def http_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    work = tmp_path_factory.mktemp("http")
    build_http_repository(work)
    config = {
        "server": {"max_message_bytes": MAX_MESSAGE_BYTES},
        "logging": {"requests": "all", "format": "json"},
        "lifecycle": {"audit_log": str(work / "audit.jsonl")},
        # A signed folder is verified as it loads: its key must be trusted.
        "signing": {"trusted_keys": [work / "keys" / "public.pem"]},
    }
    with DaemonProcess(work, config) as daemon:
        yield daemon
