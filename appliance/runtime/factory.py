"""Opening ONNX Runtime sessions: the one place an ``InferenceSession`` is built.

Every part that runs a model opens its sessions here: the daemon's ``Session``, the
package builder's golden cases, the toolchain's evaluation and graph optimisation, the
federated export check. ONNX Runtime raises its own untyped exceptions (``Fail``,
``InvalidGraph``, ``RuntimeException``) when a model does not load; here they become
the caller's error class, chosen by the caller because the same failure means different
things to each (a package that cannot be built, a model the box cannot serve, a variant
the toolchain broke), always with the file and ONNX Runtime's reason in the message.

It does not choose providers (``providers``) nor run models (``session``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

from appliance.runtime.providers import CPU, ProviderSpec

#: ONNX Runtime's own default level, spelled out: every fusion for the session's provider.
ALL_OPTIMIZATIONS = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
#: Errors only: the warnings ONNX Runtime prints at load (unused initializers, provider
#: fallbacks) are noise to an operator.
ERRORS_ONLY = 3


def open_session(
    model: Path | bytes,
    error: type[Exception],
    *,
    providers: Sequence[ProviderSpec] = (CPU,),
    intra_op_threads: int = 0,
    optimization: ort.GraphOptimizationLevel = ALL_OPTIMIZATIONS,
    optimized_model_path: Path | None = None,
    log_severity: int = ERRORS_ONLY,
) -> ort.InferenceSession:
    """An ONNX Runtime session for ``model`` (a file, or serialized bytes).

    A model that does not load raises ``error`` (called with one message) from ONNX
    Runtime's exception. ``intra_op_threads`` 0 lets ONNX Runtime use every core;
    ``optimized_model_path`` saves the graph as optimised at ``optimization``.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = optimization
    options.intra_op_num_threads = intra_op_threads
    options.log_severity_level = log_severity
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=list(providers))
    except Exception as exc:  # ORT's exception classes are not part of its public API
        where = "in-memory model" if isinstance(model, bytes) else str(model)
        raise error(f"{where}: ONNX Runtime could not load the model: {exc}") from exc


__all__ = ["ALL_OPTIMIZATIONS", "ERRORS_ONLY", "open_session"]
