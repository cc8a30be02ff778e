"""Export to ONNX (matches PyTorch), graph optimisation, int8, fp16 and sensitivity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from compress.errors import ExportError
from compress.export import export_module
from compress.passes.fp16 import Fp16Config, to_fp16
from compress.passes.optimize import OptimizeConfig, optimize_graph
from compress.passes.quantize import (
    QuantizeConfig,
    blockwise_capable,
    preprocess,
    quantizable_nodes,
    quantize_model,
)
from compress.sensitivity import analyse, block_of, blocks
from tests.compress.conftest import Task


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"input": x})[0])


@pytest.fixture(scope="module")
def mlp_onnx(tabular: Task, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "mlp.onnx"
    return export_module(tabular.model, tabular.x_test, out)


def test_mlp_export_matches_pytorch(tabular: Task, mlp_onnx: Path) -> None:
    with torch.no_grad():
        expected = tabular.model(torch.from_numpy(tabular.x_test)).numpy()
    np.testing.assert_allclose(_run(mlp_onnx, tabular.x_test), expected, rtol=1e-4, atol=1e-4)
    session = ort.InferenceSession(str(mlp_onnx), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "input" and session.get_outputs()[0].name == "logits"


def test_cnn_export_matches_pytorch(digits: Task, tmp_path: Path) -> None:
    path = export_module(digits.model, digits.x_test, tmp_path / "cnn.onnx")
    optimized = optimize_graph(path, tmp_path / "cnn-opt.onnx", OptimizeConfig())
    with torch.no_grad():
        expected = digits.model(torch.from_numpy(digits.x_test)).numpy()
    for model in (path, optimized):
        np.testing.assert_allclose(_run(model, digits.x_test), expected, rtol=1e-4, atol=1e-4)


class _Eigen(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: torch.Tensor = torch.linalg.eigvals(x @ x.T).real  # no ONNX equivalent
        return values


def test_export_error_names_op_and_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"cannot handle _Eigen: .*linalg_eig.*source\.onnx"):
        export_module(_Eigen(), np.ones((2, 3), np.float32), tmp_path / "x.onnx")


@pytest.mark.parametrize(
    "config",
    [
        QuantizeConfig(mode="dynamic"),
        QuantizeConfig(mode="static", calibration="minmax"),
        QuantizeConfig(mode="static", calibration="entropy", per_channel=False),
        QuantizeConfig(mode="static", calibration="percentile"),
    ],
    ids=lambda c: c.label,
)
def test_int8_close_to_float(
    config: QuantizeConfig, tabular: Task, mlp_onnx: Path, tmp_path: Path
) -> None:
    calibration = [{"input": tabular.x_test[i : i + 32]} for i in range(0, 128, 32)]
    out = quantize_model(mlp_onnx, tmp_path / "q.onnx", config, calibration)
    agree = _run(out, tabular.x_test).argmax(1) == _run(mlp_onnx, tabular.x_test).argmax(1)
    assert agree.mean() > 0.95


def test_fp16_runs(mlp_onnx: Path, tabular: Task, tmp_path: Path) -> None:
    out = to_fp16(mlp_onnx, tmp_path / "h.onnx", Fp16Config())
    np.testing.assert_allclose(
        _run(out, tabular.x_test), _run(mlp_onnx, tabular.x_test), rtol=2e-2, atol=2e-2
    )


def test_sensitivity_ranks_every_layer(mlp_onnx: Path, tabular: Task, tmp_path: Path) -> None:
    def score(path: Path) -> float:
        return float((_run(path, tabular.x_test).argmax(1) == tabular.y_test).mean())

    prepared = preprocess(mlp_onnx, tmp_path / "pre.onnx")
    ranked = analyse(prepared, QuantizeConfig(), score, tmp_path)
    assert {n for r in ranked for n in r.nodes} == set(quantizable_nodes(prepared))
    assert [r.drop for r in ranked] == sorted((r.drop for r in ranked), reverse=True)


def test_sensitivity_granularity(mlp_onnx: Path, tmp_path: Path) -> None:
    prepared = preprocess(mlp_onnx, tmp_path / "pre.onnx")
    nodes = quantizable_nodes(prepared)
    assert list(blocks(prepared, "node")) == nodes
    assert block_of("/encoder/layer.3/attention/self/query/MatMul") == "/encoder/layer.3"


def _two_layer_matmul(path: Path) -> Path:
    """x (n, 256) -> MatMul W1 (256, 128) -> Relu -> MatMul W2 (128, 8); W2 has outliers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.1, (256, 128)).astype(np.float32)
    w2 = rng.normal(0, 0.1, (128, 8)).astype(np.float32)
    w2[::16] *= 40  # a few large rows: one scale per column suits them badly
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="first"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="second"),
    ]
    graph = helper.make_graph(
        nodes,
        "two",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])],
        initializer=[numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, path)
    return path


def test_blockwise_fallback_is_closer_to_float_than_int8_and_as_small(tmp_path: Path) -> None:
    import onnx

    source = _two_layer_matmul(tmp_path / "two.onnx")
    assert blockwise_capable(source, ["first", "second", "relu"]) == ("first", "second")
    x = np.random.default_rng(1).normal(0, 1, (64, 256)).astype(np.float32)
    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    reference = session.run(None, {"x": x})[0]

    def error(config: QuantizeConfig, name: str) -> tuple[float, Path]:
        out = quantize_model(source, tmp_path / name, config)
        got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
            None, {"x": x}
        )[0]
        return float(np.abs(got - reference).max() / np.abs(reference).max()), out

    int8_error, _ = error(QuantizeConfig(), "int8.onnx")
    float_error, float_path = error(QuantizeConfig(exclude=("second",)), "float.onnx")
    block_error, block_path = error(
        QuantizeConfig(blockwise=("second",), block_size=32), "blocks.onnx"
    )
    ops = [n.op_type for n in onnx.load(str(block_path)).graph.node]
    assert "MatMulNBits" in ops and "MatMulInteger" in ops  # second in blocks, first int8
    assert block_error < int8_error
    assert block_error < 2 * float_error + 0.01
    assert block_path.stat().st_size < float_path.stat().st_size
