"""Golden cases and the reference profile written into ``model.json``.

Golden cases are small inputs with the outputs ONNX Runtime gave when the package was
built; the box re-runs them before a version may serve (``Golden`` holds the tolerance).
The reference profile summarises inputs and outputs on representative data so the
monitoring side can compute drift (PSI) against it. Both run the model with ONNX
Runtime on the CPU provider here, so the expectation does not depend on the build box's GPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from appliance.errors import PackageError
from appliance.package._onnx_specs import NUMPY_BY_V2, graph_specs, load_graph
from appliance.package.manifest import Golden, GoldenCase, TensorData, TensorSpec

Arrays = Mapping[str, np.ndarray]
PROFILE_VERSION = 1
#: Size chosen for a dynamic non-batch dimension of a random input (e.g. sequence length).
_DYNAMIC_DIM = 8
#: Token ids stay below this so random text inputs are valid for any real vocabulary.
_MAX_RANDOM_ID = 100


def _session(onnx_path: Path) -> ort.InferenceSession:
    from appliance.runtime.factory import open_session  # here: runtime imports package

    return open_session(onnx_path, PackageError)


def run_model(onnx_path: Path, inputs: Arrays, batch_size: int = 64) -> dict[str, np.ndarray]:
    """All outputs for ``inputs``, run in slices of ``batch_size`` along axis 0."""
    session = _session(onnx_path)
    n = len(next(iter(inputs.values())))
    parts: dict[str, list[np.ndarray]] = {}
    names = [o.name for o in session.get_outputs()]
    for start in range(0, n, batch_size):
        feed = {k: np.asarray(v[start : start + batch_size]) for k, v in inputs.items()}
        try:
            results = session.run(names, feed)
        except Exception as exc:
            raise PackageError(f"{onnx_path}: running the model failed: {exc}") from exc
        for name, value in zip(names, results, strict=True):
            parts.setdefault(name, []).append(np.asarray(value))
    return {k: np.concatenate(v) for k, v in parts.items()}


def random_inputs(specs: Sequence[TensorSpec], n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` rows of valid random inputs: the batch axis is ``n``, other dynamic axes 8.

    Names that look like masks get ones and ``token_type_ids`` zeros, since random values
    there are not valid inputs for transformer models.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.datatype == "BYTES":
            raise PackageError(f"input {spec.name!r}: cannot make random BYTES; pass --golden")
        dims = [
            n if i == 0 and d == -1 else (_DYNAMIC_DIM if d == -1 else d)
            for i, d in enumerate(spec.shape)
        ]
        dtype = NUMPY_BY_V2[spec.datatype]
        if "mask" in spec.name.lower():
            out[spec.name] = np.ones(dims, dtype=dtype)
        elif spec.name == "token_type_ids":
            out[spec.name] = np.zeros(dims, dtype=dtype)
        elif np.issubdtype(dtype, np.floating):
            out[spec.name] = rng.standard_normal(dims).astype(dtype)
        elif dtype is np.bool_:
            out[spec.name] = rng.integers(0, 2, dims).astype(dtype)
        else:
            out[spec.name] = rng.integers(0, _MAX_RANDOM_ID, dims).astype(dtype)
    return out


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` file, keyed by input name."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        message = f"{path}: expected an .npz of input arrays, could not read it: {exc}"
        raise PackageError(message) from exc


def _tensor(array: np.ndarray, spec_datatype: str) -> TensorData:
    return TensorData(
        datatype=spec_datatype,  # type: ignore[arg-type]
        shape=tuple(int(d) for d in array.shape),
        data=array.reshape(-1).tolist(),
    )


def _check_inputs(inputs: Arrays, specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    expected = {s.name for s in specs}
    if set(inputs) != expected:
        raise PackageError(
            f"golden inputs: expected arrays {sorted(expected)}, got {sorted(inputs)}"
        )
    out = {}
    for spec in specs:
        array = np.asarray(inputs[spec.name])
        if array.ndim != len(spec.shape) or any(
            d not in (-1, a) for d, a in zip(spec.shape, array.shape, strict=True)
        ):
            raise PackageError(
                f"golden input {spec.name!r}: expected shape {list(spec.shape)}, "
                f"got {list(array.shape)}"
            )
        out[spec.name] = array.astype(NUMPY_BY_V2[spec.datatype], copy=False)
    return out


def make_golden(
    onnx_path: Path,
    inputs: Arrays | Path | None = None,
    n: int = 4,
    rtol: float = 1e-3,
    atol: float = 1e-3,
) -> Golden:
    """Golden cases for the on-box self-test, expected outputs from ONNX Runtime (CPU).

    ``inputs`` are arrays keyed by input name (or an ``.npz`` of them); without them,
    random valid inputs are made. When the batch axis is dynamic, each of the first ``n``
    rows becomes one case of batch 1; otherwise the whole array is one case.
    Tolerances default to what fp32 needs across CPU kinds and GPUs; quantized models
    should pass looser ones (integer kernels round differently per instruction set).
    """
    onnx_path = Path(onnx_path)
    in_specs, out_specs = graph_specs(load_graph(onnx_path))
    if inputs is None:
        arrays = random_inputs(in_specs, n)
    elif isinstance(inputs, Path | str):
        arrays = _check_inputs(load_npz(Path(inputs)), in_specs)
    else:
        arrays = _check_inputs(inputs, in_specs)
    batched = all(s.shape and s.shape[0] == -1 for s in in_specs)
    if batched:
        rows = min(n, len(next(iter(arrays.values()))))
        feeds = [{k: v[i : i + 1] for k, v in arrays.items()} for i in range(rows)]
    else:
        feeds = [dict(arrays)]
    out_types = {s.name: s.datatype for s in out_specs}
    in_types = {s.name: s.datatype for s in in_specs}
    cases = []
    for feed in feeds:
        outputs = run_model(onnx_path, feed)
        cases.append(
            GoldenCase(
                inputs={k: _tensor(v, in_types[k]) for k, v in feed.items()},
                outputs={k: _tensor(v, out_types[k]) for k, v in outputs.items()},
            )
        )
    return Golden(rtol=rtol, atol=atol, cases=cases)


# ---------------------------------------------------------------------------- profile


def _histogram(values: np.ndarray, bins: int) -> dict[str, Any]:
    """Quantile bin edges and the fraction of values in each bin (the PSI reference).

    Edges are the inner quantiles; bin i holds values in (edges[i-1], edges[i]], with
    the first bin open below and the last open above, so live data always lands in a bin.
    Repeated edges (discrete features) are merged.
    """
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"bin_edges": [], "bin_fractions": [1.0]}
    inner = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(inner)
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return {
        "bin_edges": [float(e) for e in edges],
        "bin_fractions": [float(c) / values.size for c in counts],
    }


def _stats(values: np.ndarray, bins: int) -> dict[str, Any]:
    values = values.astype(np.float64).reshape(-1)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {
            "count": int(values.size),
            "mean": 0.0,
            "std": 0.0,
            "min": 0.0,
            "max": 0.0,
            **_histogram(finite, bins),
        }
    return {
        "count": int(values.size),
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "min": float(finite.min()),
        "max": float(finite.max()),
        **_histogram(finite, bins),
    }


def _tensor_profile(array: np.ndarray, bins: int) -> dict[str, Any]:
    # Per-feature only for float (batch, features) tables; token ids or masks in a
    # (batch, seq) tensor have no per-column meaning and are summarised as a whole.
    if array.ndim == 2 and array.shape[1] <= 4096 and np.issubdtype(array.dtype, np.floating):
        return {
            "kind": "tabular",
            "features": [_stats(array[:, j], bins) for j in range(array.shape[1])],
        }
    return {"kind": "summary", "shape": [-1, *array.shape[1:]], **_stats(array, bins)}


def _probabilities(logits: np.ndarray) -> np.ndarray:
    rows = logits.astype(np.float64)
    if rows.min() >= 0 and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3):
        return rows
    rows = rows - rows.max(axis=1, keepdims=True)
    exp = np.exp(rows)
    return exp / exp.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def _classifier_profile(
    logits: np.ndarray, labels: Sequence[str] | None, bins: int
) -> dict[str, Any]:
    probs = _probabilities(logits)
    predicted = probs.argmax(axis=1)
    names = list(labels) if labels else [str(i) for i in range(probs.shape[1])]
    counts = np.bincount(predicted, minlength=probs.shape[1])
    return {
        "kind": "classifier",
        "class_distribution": {names[i]: float(c) / len(predicted) for i, c in enumerate(counts)},
        "confidence": _stats(probs.max(axis=1), bins),
    }


def make_reference_profile(
    onnx_path: Path,
    inputs: Arrays,
    task: str = "classification",
    labels: Sequence[str] | None = None,
    bins: int = 10,
) -> dict[str, Any]:
    """Summary statistics of ``inputs`` and the model's outputs on them, for drift checks.

    Structure (``PROFILE_VERSION`` 1)::

        {"version": 1, "n_samples": N,
         "inputs":  {NAME: PROFILE}, "outputs": {NAME: PROFILE}}

    where PROFILE is one of:

    - ``{"kind": "tabular", "features": [STATS, ...]}`` for a float (batch, features) tensor,
      one STATS per feature column (index = column);
    - ``{"kind": "summary", "shape": [-1, ...], **STATS}`` for any other tensor, over all
      its values (token ids, pixels, embeddings);
    - ``{"kind": "classifier", "class_distribution": {LABEL: fraction},
      "confidence": STATS}`` for a classification model's 2-D output (softmax applied
      when the output is logits; confidence is the top-class probability).

    STATS is ``{"count", "mean", "std", "min", "max", "bin_edges", "bin_fractions"}``:
    ``bin_edges`` are the inner decile edges (k edges, k+1 bins; bin 0 is
    ``x <= edges[0]``, bin i is ``edges[i-1] < x <= edges[i]``, the last is open above)
    and ``bin_fractions`` the share of reference values per bin. PSI on live data is
    ``sum((live - ref) * ln(live / ref))`` over those bins (with a small floor on both).
    """
    onnx_path = Path(onnx_path)
    outputs = run_model(onnx_path, inputs)
    n = len(next(iter(inputs.values())))
    out_profiles: dict[str, Any] = {}
    for name, value in outputs.items():
        if task == "classification" and value.ndim == 2 and value.shape[1] >= 2:
            out_profiles[name] = _classifier_profile(value, labels, bins)
        else:
            out_profiles[name] = _tensor_profile(value, bins)
    return {
        "version": PROFILE_VERSION,
        "n_samples": int(n),
        "inputs": {k: _tensor_profile(np.asarray(v), bins) for k, v in inputs.items()},
        "outputs": out_profiles,
    }


__all__ = [
    "PROFILE_VERSION",
    "load_npz",
    "make_golden",
    "make_reference_profile",
    "random_inputs",
    "run_model",
]
