"""Export PyTorch models to ONNX: ``torch.onnx`` for modules, Optimum for Hugging Face.

Modules export with the appliance's contract (input ``input``, output ``logits``, a
dynamic batch axis); Hugging Face models with Optimum's task configs (``input_ids``,
``attention_mask``, ``token_type_ids`` with dynamic batch and sequence). An op the
exporter cannot handle becomes an ``ExportError`` that says which and what to do.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from compress._inputs import ARRAY_INPUT, ARRAY_OUTPUT
from compress.errors import ExportError

log = logging.getLogger(__name__)
#: ONNX Runtime 1.31 loads IR versions up to 13; keep what we write loadable.
MAX_IR_VERSION = 10
OPSET = 18


def _unsupported_op(message: str) -> str:
    match = re.search(r"(aten::[\w.]+|torch\.ops\.[\w.]+|'[\w.]+' is not supported)", message)
    return match.group(1) if match else message.strip().splitlines()[0][:200]


def export_module(model: nn.Module, example: np.ndarray, out_path: Path) -> Path:
    """Export ``model`` (batch, ...) -> (batch, classes) to ``out_path`` with a dynamic batch."""
    model = model.eval()
    x = torch.tensor(np.asarray(example[:2], dtype=np.float32))
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        with _quiet():
            program = torch.onnx.export(
                model,
                (x,),
                dynamo=True,
                input_names=[ARRAY_INPUT],
                output_names=[ARRAY_OUTPUT],
                dynamic_shapes=({0: batch},),
                opset_version=OPSET,
                verbose=False,
            )
        if program is None:
            raise ExportError("torch.onnx.export returned no program")
        program.save(str(out_path))
    except ExportError:
        raise
    except Exception as exc:  # torch.export/onnx raise many unrelated classes
        raise ExportError(
            f"the ONNX exporter cannot handle {type(model).__name__}: "
            f"{_unsupported_op(str(exc))}. Replace that op with a supported one (or wrap "
            "it in a module with an ONNX symbolic), or export the model yourself and give "
            "the file as source.onnx"
        ) from exc
    _cap_ir_version(out_path)
    return out_path


def export_huggingface(model: nn.Module, out_path: Path, task: str) -> Path:
    """Export a Hugging Face model with Optimum (``feature-extraction`` or
    ``text-classification``) to ``out_path``."""
    from optimum.exporters.onnx import onnx_export_from_model

    with tempfile.TemporaryDirectory(prefix="compress-export-") as tmp:
        try:
            with _quiet():
                onnx_export_from_model(model, tmp, task=task, do_validation=False, opset=OPSET)
        except Exception as exc:  # optimum raises ValueError/KeyError/RuntimeError
            raise ExportError(
                f"Optimum could not export {type(model).__name__} for task {task!r}: "
                f"{_unsupported_op(str(exc))}. Check that the architecture is supported "
                "by optimum-onnx, or export it yourself and give the file as source.onnx"
            ) from exc
        exported = Path(tmp) / "model.onnx"
        model_proto = onnx.load(str(exported))
        model_proto.ir_version = min(model_proto.ir_version, MAX_IR_VERSION)
        onnx.save(model_proto, str(out_path))
    return out_path


def _cap_ir_version(path: Path) -> None:
    model = onnx.load(str(path))
    if model.ir_version > MAX_IR_VERSION:
        model.ir_version = MAX_IR_VERSION
        onnx.save(model, str(path))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress and emit deprecation chatter; keep the console ours."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


__all__ = ["MAX_IR_VERSION", "export_huggingface", "export_module"]
