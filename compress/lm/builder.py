"""onnxruntime-genai's model builder on a local Hugging Face folder.

``python -m onnxruntime_genai.models.builder -i HF -o OUT -p int4 -e cpu`` writes the
folder the appliance serves (``genai_config.json``, ``model.onnx`` + ``.data``,
tokenizer files, ``chat_template.jinja``). It runs in a subprocess: the builder imports
transformers and torch, and a failure there must not take the caller with it.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from compress.errors import CompressError


@dataclass(frozen=True)
class GenaiBuild:
    """One builder run: precision (``int4``, ``int8``, ``fp16``, ``bf16``, ``fp32``),
    execution provider (``cpu``, ``cuda``) and ``--extra_options`` key=value pairs."""

    precision: str = "int4"
    provider: str = "cpu"
    extra: dict[str, str] = field(default_factory=dict)


def build_genai(hf_folder: Path, out: Path, build: GenaiBuild | None = None) -> Path:
    """Build ``hf_folder`` into ``out``; raises ``CompressError`` with the builder's last
    lines when it fails."""
    build = build or GenaiBuild()
    cache = out.parent / f".{out.name}-cache"
    command = [
        sys.executable,
        "-m",
        "onnxruntime_genai.models.builder",
        "-i",
        str(hf_folder),
        "-o",
        str(out),
        "-p",
        build.precision,
        "-e",
        build.provider,
        "-c",
        str(cache),
    ]
    if build.extra:
        command += ["--extra_options", *(f"{k}={v}" for k, v in build.extra.items())]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not (out / "genai_config.json").is_file():
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-8:])
        raise CompressError(
            f"the onnxruntime-genai builder could not build {hf_folder.name} "
            f"({build.precision}, {build.provider}): {tail}"
        )
    return out


__all__ = ["GenaiBuild", "build_genai"]
