"""Int8 quantization with ONNX Runtime: dynamic, or static with calibration.

- Dynamic: weights int8 ahead of time, activations quantized per batch at run time. No
  calibration data; the usual choice for transformers on CPU.
- Static: activation ranges calibrated on local data (MinMax, Entropy or Percentile),
  written as QDQ pairs (ORT's recommended format since 1.11) or QOperator ops.
- ``per_channel`` gives each output channel its own weight scale. Measured on MiniLM,
  per-tensor weights lost fidelity badly (cosine 0.947) where per-channel kept 0.995.
- ``exclude`` keeps nodes in float; ``blockwise`` gives nodes 8-bit weights in blocks of
  ``block_size`` along the input dimension, each block with its own scale, computed by
  ONNX Runtime's ``MatMulNBits`` with int8 activations quantized per block
  (``accuracy_level`` 4). These are the sensitivity fallback's levers. Measured on MiniLM
  (three most sensitive MatMuls): float keeps cosine 0.9915 at 1.77x the fp32 speed and
  28.2 MB; blocks of 128 keep 0.9911 at 1.93x and 22.9 MB, blocks of 32 0.9918 at 1.84x.

Pre-processing (``quant_pre_process``: symbolic shape inference and ORT optimisation)
runs first, as ORT's quantization guide prescribes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.matmul_nbits_quantizer import (
    DefaultWeightOnlyQuantConfig,
    MatMulNBitsQuantizer,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from compress.errors import QuantizeError

log = logging.getLogger(__name__)

_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


@dataclass(frozen=True)
class QuantizeConfig:
    mode: Literal["dynamic", "static"] = "dynamic"
    per_channel: bool = True
    calibration: Literal["minmax", "entropy", "percentile"] = "minmax"
    format: Literal["qdq", "qoperator"] = "qdq"
    exclude: tuple[str, ...] = field(default_factory=tuple)  # node names kept in float
    #: MatMul nodes (constant 2-D weight) given 8-bit block-wise weights instead.
    blockwise: tuple[str, ...] = field(default_factory=tuple)
    block_size: int = 128
    #: When set, only these nodes are quantized (sensitivity analysis uses it).
    only: tuple[str, ...] | None = None

    @property
    def label(self) -> str:
        scale = "pc" if self.per_channel else "pt"
        if self.mode == "dynamic":
            return f"int8-dyn-{scale}"
        return f"int8-static-{self.calibration}-{self.format}-{scale}"


class _ArrayReader(CalibrationDataReader):  # type: ignore[misc]
    """Feeds calibration batches to ORT's calibrator."""

    def __init__(self, batches: Sequence[Mapping[str, np.ndarray]]):
        self._batches = list(batches)
        self._iter: Iterator[Mapping[str, np.ndarray]] = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iter, None)
        return None if batch is None else dict(batch)

    def rewind(self) -> None:
        self._iter = iter(self._batches)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ORT's quantizer prints calibration progress and logs INFO on the root logger."""
    logging.disable(logging.INFO)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)


def preprocess(in_path: Path, out_path: Path) -> Path:
    """``quant_pre_process``; symbolic shape inference is skipped when it cannot cope."""
    source, target = in_path.resolve(), out_path.resolve()
    for skip_symbolic in (False, True):
        try:
            # ONNX Runtime writes scratch files (sym_shape_infer_temp.onnx, uuid.data)
            # into the working directory: give it a private one.
            with _quiet(), tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
                quant_pre_process(str(source), str(target), skip_symbolic_shape=skip_symbolic)
            return out_path
        except Exception as exc:  # symbolic shape inference raises bare Exceptions
            log.debug("quant_pre_process (skip_symbolic=%s) failed: %s", skip_symbolic, exc)
    log.info("quant_pre_process failed on %s; quantizing the graph as it is", in_path.name)
    return in_path


def quantize_model(
    in_path: Path,
    out_path: Path,
    config: QuantizeConfig,
    calibration: Sequence[Mapping[str, np.ndarray]] | None = None,
    prepare: bool = True,
) -> Path:
    """Write the int8 model of ``in_path`` (float) to ``out_path``.

    ``prepare=False`` when ``in_path`` already went through ``preprocess`` (the search
    prepares each float model once and quantizes it many ways).
    """
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}  # for fused/contrib-op graphs
    nodes_to_quantize = list(config.only) if config.only is not None else None
    excluded = [*config.exclude, *config.blockwise]
    with tempfile.TemporaryDirectory(prefix="compress-quant-") as tmp, _quiet():
        source = preprocess(in_path, Path(tmp) / "pre.onnx") if prepare else in_path
        try:
            if config.mode == "dynamic":
                quantize_dynamic(
                    source,
                    out_path,
                    per_channel=config.per_channel,
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=excluded,
                    nodes_to_quantize=nodes_to_quantize,
                    extra_options=extra,
                )
            else:
                if not calibration:
                    raise QuantizeError("static quantization needs calibration data, got none")
                quantize_static(
                    source,
                    out_path,
                    _ArrayReader(calibration),
                    quant_format=QuantFormat.QDQ
                    if config.format == "qdq"
                    else QuantFormat.QOperator,
                    per_channel=config.per_channel,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=excluded,
                    nodes_to_quantize=nodes_to_quantize,
                    calibrate_method=_METHODS[config.calibration],
                    extra_options={**extra, "CalibTensorRangeSymmetric": False},
                    calibration_providers=["CPUExecutionProvider"],
                )
            if config.blockwise:
                _quantize_blockwise(out_path, config.blockwise, config.block_size)
        except QuantizeError:
            raise
        except Exception as exc:  # ORT's quantizer raises RuntimeError/ValueError/...
            message = f"quantizing {in_path.name} ({config.label}) failed: {exc}"
            raise QuantizeError(message) from exc
    return out_path


def _quantize_blockwise(path: Path, nodes: Sequence[str], block_size: int) -> None:
    """Rewrite ``nodes`` of the model at ``path`` as 8-bit block-wise ``MatMulNBits``."""
    algo = DefaultWeightOnlyQuantConfig(
        block_size=block_size, is_symmetric=True, accuracy_level=4, bits=8
    )
    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(path)), nodes_to_include=list(nodes), algo_config=algo
    )
    quantizer.process()
    quantizer.model.save_model_to_file(str(path), use_external_data_format=False)


def blockwise_capable(path: Path, names: Sequence[str]) -> tuple[str, ...]:
    """Those of ``names`` that ``MatMulNBits`` can take: MatMul with a constant 2-D weight."""
    model = onnx.load(str(path), load_external_data=False)
    weights = {i.name for i in model.graph.initializer if len(i.dims) == 2}
    wanted = set(names)
    return tuple(
        n.name
        for n in model.graph.node
        if n.name in wanted
        and n.op_type == "MatMul"
        and len(n.input) == 2
        and n.input[1] in weights
    )


def quantizable_nodes(path: Path) -> list[str]:
    """Names of the nodes int8 quantization acts on: MatMul/Gemm/Conv with a constant weight."""
    model = onnx.load(str(path), load_external_data=False)
    constants = {i.name for i in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type in ("MatMul", "Gemm", "Conv") and any(i in constants for i in n.input)
    ]


__all__ = [
    "QuantizeConfig",
    "blockwise_capable",
    "preprocess",
    "quantizable_nodes",
    "quantize_model",
]
