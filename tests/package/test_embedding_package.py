"""An embedding package carries its tokenizer, signed with the model, and its pooling."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from appliance.errors import PackageError, SignatureError
from appliance.package import unpack_package, verify_package
from tests.models import encoder_model
from tests.package.test_cli import _run


@pytest.fixture
def encoder(tmp_path: Path) -> Path:
    folder = encoder_model(tmp_path / "encoder")
    ids = np.array([[2, 4, 5, 3]], dtype=np.int64)
    np.savez(
        folder.parent / "golden.npz",
        input_ids=ids,
        attention_mask=np.ones_like(ids),
        token_type_ids=np.zeros_like(ids),
    )
    assert _run(["keys", "generate", "--out", str(tmp_path / "keys")]) == 0
    return folder.parent


def build(encoder: Path, *extra: str) -> list[str]:
    return [
        "package",
        "build",
        str(encoder / "model.onnx"),
        "--name",
        "notes-encoder",
        "--version",
        "1",
        "--key",
        str(encoder.parent / "keys" / "private.pem"),
        "--out",
        str(encoder.parent / "dist"),
        "--golden",
        str(encoder / "golden.npz"),
        "--task",
        "embedding",
        *extra,
    ]


def test_an_embedding_package_without_its_tokenizer_is_refused(encoder: Path) -> None:
    with pytest.raises(PackageError, match=r"expected tokenizer\.json among the included files"):
        _run(build(encoder))


def test_the_tokenizer_is_shipped_signed_and_the_pooling_stated(encoder: Path) -> None:
    tokenizer = str(encoder / "tokenizer.json")
    options = ["--include", tokenizer, "--pooling", "cls", "--no-normalize", "--max-length", "64"]
    code = _run(build(encoder, *options))
    assert code == 0
    apkg = encoder.parent / "dist" / "notes-encoder-1.apkg"
    with tarfile.open(apkg) as tar:
        assert "tokenizer.json" in tar.getnames()
    public = encoder.parent / "keys" / "public.pem"
    manifest = verify_package(apkg, [public])
    assert manifest.embedding is not None
    assert (manifest.embedding.pooling, manifest.embedding.normalize) == ("cls", False)
    assert manifest.embedding.max_length == 64
    # A changed tokenizer breaks the signature like a changed model would.
    folder = encoder.parent / "unpacked"
    unpack_package(apkg, folder)
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    tokenizer["model"]["vocab"]["fever"] = 0
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(SignatureError):
        verify_package(folder, [public])
