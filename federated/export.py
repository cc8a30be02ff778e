"""Write the final global model where ``appliance compress`` and ``package build`` find it.

Owns the files in run config ``output-dir``:

- ``final_model.onnx``: input ``input`` (batch dynamic), output ``logits``;
- ``final_model.pt``: the PyTorch ``state_dict`` (standardisation buffers included);
- ``final_model.json``: how to rebuild the network (model kind, shapes, labels).

The ONNX file is checked against PyTorch on random inputs before it is kept, so a bad
export fails the run here rather than on the box's self-test later.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from federated.errors import ExportError
from federated.settings import RunSettings

ONNX_NAME = "final_model.onnx"
WEIGHTS_NAME = "final_model.pt"
SPEC_NAME = "final_model.json"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
# Float32 kernels in ONNX Runtime and PyTorch differ in summation order only.
_TOLERANCE = 1e-4


def export_final_model(model: nn.Module, settings: RunSettings, output_dir: Path) -> Path:
    """Write ONNX, weights and spec into ``output_dir``; return the ONNX path."""
    output_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    example = torch.rand(2, *settings.input_shape)  # (batch, *input_shape)
    onnx_path = output_dir / ONNX_NAME
    _atomic_write(onnx_path, lambda tmp: _export_onnx(model, example, tmp))
    _check_onnx(model, onnx_path, settings)
    _atomic_write(output_dir / WEIGHTS_NAME, lambda tmp: torch.save(model.state_dict(), tmp))
    spec = {
        "model": settings.model.value,
        "input_shape": list(settings.input_shape),
        "hidden": list(settings.hidden),
        "labels": list(settings.labels),
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "num_server_rounds": settings.num_server_rounds,
    }
    _atomic_write(output_dir / SPEC_NAME, lambda tmp: tmp.write_text(json.dumps(spec, indent=2)))
    return onnx_path


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    # The exporter warns about its own internals (pytree deprecations, missing
    # torchvision ops) on every call; none concern our two small models.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            program = torch.onnx.export(
                model,
                (example,),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                dynamo=True,
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many unrelated types
            raise ExportError(f"ONNX export of the final model failed: {exc}") from exc
    if program is None:
        raise ExportError("ONNX export of the final model returned no program")
    program.save(str(path))


def _check_onnx(model: nn.Module, path: Path, settings: RunSettings) -> None:
    from appliance.runtime import open_session

    session = open_session(path, ExportError)
    x = torch.rand(5, *settings.input_shape)  # a batch size unlike the export's 2
    (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    if got.shape != want.shape or not np.allclose(got, want, atol=_TOLERANCE):
        raise ExportError(
            f"ONNX export disagrees with PyTorch: expected logits {want.shape} within "
            f"{_TOLERANCE}, got {got.shape} off by up to {float(np.abs(got - want).max()):.3g}"
        )


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


__all__ = [
    "INPUT_NAME",
    "ONNX_NAME",
    "OUTPUT_NAME",
    "SPEC_NAME",
    "WEIGHTS_NAME",
    "export_final_model",
]
