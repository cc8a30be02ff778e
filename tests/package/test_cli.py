"""The ``appliance keys`` and ``appliance package`` commands, through their parsers."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from appliance.cli import keys as keys_cli
from appliance.cli import package as package_cli
from appliance.errors import SignatureError


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="appliance")
    sub = parser.add_subparsers(dest="command", required=True)
    keys_cli.register(sub)
    package_cli.register(sub)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_generate_build_verify_inspect(
    tmp_path: Path, onnx_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(["keys", "generate", "--out", str(tmp_path / "k")]) == 0
    npz = tmp_path / "golden.npz"
    np.savez(npz, input=np.zeros((2, 4), dtype=np.float32))
    assert (
        _run(
            [
                "package",
                "build",
                str(onnx_model),
                "--name",
                "tiny",
                "--version",
                "2",
                "--key",
                str(tmp_path / "k" / "private.pem"),
                "--out",
                str(tmp_path / "pkgs"),
                "--golden",
                str(npz),
                "--labels",
                "a",
                "b",
                "c",
                "--max-batch-size",
                "8",
            ]
        )
        == 0
    )
    apkg = tmp_path / "pkgs" / "tiny-2.apkg"
    assert apkg.is_file()
    assert _run(["package", "verify", str(apkg), "--key", str(tmp_path / "k" / "public.pem")]) == 0
    assert _run(["package", "inspect", str(apkg)]) == 0
    out = capsys.readouterr().out
    assert "tiny version 2" in out and "golden cases: 2" in out and "labels: a, b, c" in out


def test_verify_wrong_key(tmp_path: Path, apkg: Path, other_keys: tuple[Path, Path]) -> None:
    with pytest.raises(SignatureError):
        _run(["package", "verify", str(apkg), "--key", str(other_keys[1])])
