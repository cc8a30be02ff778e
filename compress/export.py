"""Export PyTorch models to ONNX with ``torch.onnx``: modules and Hugging Face encoders.

Modules export with the appliance's contract (input ``input``, output ``logits``, a
dynamic batch axis); Hugging Face encoders with the inputs their ``forward`` takes
(``input_ids``, ``attention_mask``, ``token_type_ids``, dynamic batch and sequence). An op the
exporter cannot handle becomes an ``ExportError`` that says which and what to do.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
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


#: Encoder inputs in the order Hugging Face's BERT-style ``forward`` takes them.
_ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class _EncoderOutputs(nn.Module):
    """A Hugging Face encoder as a plain tensor function, for ``torch.onnx``.

    ``feature-extraction`` returns ``last_hidden_state`` (batch, seq, hidden);
    ``text-classification`` returns ``logits`` (batch, classes), the names Optimum's
    exporter gives them, so the graphs read the same as before.
    """

    def __init__(self, model: nn.Module, inputs: tuple[str, ...], task: str):
        super().__init__()
        self.model = model
        self.inputs = inputs
        self.output = "last_hidden_state" if task == "feature-extraction" else "logits"

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        out = self.model(**dict(zip(self.inputs, tensors, strict=True)))
        return getattr(out, self.output)  # type: ignore[no-any-return]


def _encoder_inputs(model: nn.Module) -> tuple[str, ...]:
    import inspect

    accepted = inspect.signature(model.forward).parameters
    return tuple(name for name in _ENCODER_INPUTS if name in accepted)


def _example_input(name: str) -> torch.Tensor:
    """(batch 2, seq 16) int64: token ids, an all-ones mask, zero token types."""
    if name == "input_ids":
        return torch.randint(1, 100, (2, 16))
    fill = 1 if name == "attention_mask" else 0
    return torch.full((2, 16), fill, dtype=torch.long)


def export_huggingface(model: nn.Module, out_path: Path, task: str) -> Path:
    """Export a Hugging Face encoder with ``torch.onnx`` (``feature-extraction`` or
    ``text-classification``) to ``out_path``; batch and sequence axes are dynamic.

    ``torch.onnx`` rather than Optimum: optimum-onnx pins transformers below 4.58, while
    the causal-LM builder needs transformers 5, and one environment must hold both.
    """
    if task not in ("feature-extraction", "text-classification"):
        raise ExportError(
            f"expected task 'feature-extraction' or 'text-classification', got {task!r}"
        )
    names = _encoder_inputs(model)
    wrapper = _EncoderOutputs(model.eval(), names, task)
    batch = torch.export.Dim("batch", min=1, max=4096)
    sequence = torch.export.Dim("sequence", min=2, max=8192)
    example = tuple(_example_input(name) for name in names)
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(
                wrapper,
                example,
                dynamo=True,
                input_names=list(names),
                output_names=[wrapper.output],
                # One entry: forward takes its tensors as *args.
                dynamic_shapes=(tuple({0: batch, 1: sequence} for _ in names),),
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
            f"torch.onnx could not export {type(model).__name__} for task {task!r}: "
            f"{_unsupported_op(str(exc))}. Export it yourself and give the file as "
            "source.onnx"
        ) from exc
    _cap_ir_version(out_path)
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
