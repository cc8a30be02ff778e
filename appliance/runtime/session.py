"""One ONNX Runtime session: load a model file, read its specs, warm it up, run it.

This is where ONNX Runtime's exceptions at run time become ours (``InferenceError``, or
``InvalidInputError`` for values the model rejects); at load, ``factory.open_session``
raises ``ModelLoadError``. At run time their text keeps only what names the fault
(``appliance.clip.strip_values``), since ONNX Runtime quotes the offending input values.
Everything here blocks; callers run it off the event loop.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument as OrtInvalidArgument

from appliance.clip import strip_values
from appliance.errors import InferenceError, InvalidInputError, ModelLoadError
from appliance.package.manifest import TensorSpec
from appliance.runtime.factory import open_session
from appliance.runtime.providers import ProviderChoice
from appliance.tensors import ORT_TO_V2, V2_TO_NUMPY

log = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]


class Session:
    """An ONNX model ready to run on the chosen providers."""

    def __init__(self, path: Path, providers: ProviderChoice, intra_op_threads: int = 0):
        self._session = open_session(
            path,
            ModelLoadError,
            providers=providers.providers,
            intra_op_threads=intra_op_threads,
        )
        self.path = path
        self.providers = tuple(self._session.get_providers())
        self.inputs = tuple(_spec(arg) for arg in self._session.get_inputs())
        self.outputs = tuple(_spec(arg) for arg in self._session.get_outputs())
        self._output_names = [spec.name for spec in self.outputs]

    @property
    def batchable(self) -> bool:
        """Every input and output has a dynamic first (batch) dimension."""
        return all(spec.shape and spec.shape[0] == -1 for spec in (*self.inputs, *self.outputs))

    def run(self, feeds: dict[str, Array]) -> dict[str, Array]:
        try:
            results = self._session.run(self._output_names, feeds)
        except OrtInvalidArgument as exc:
            # Values the model rejects (a token id past the vocabulary, say): the caller's.
            # ORT's text names the value (idx=31337): only the fault's kind and node go on,
            # and not the original exception either (a traceback would print it).
            raise InvalidInputError(
                f"the model rejected the input values ({strip_values(str(exc))}); expected "
                "values the model accepts, such as token ids within its vocabulary"
            ) from None
        except Exception as exc:  # ORT's Fail/RuntimeException, untyped
            raise InferenceError(
                f"ONNX Runtime failed on {self.path.name}: {strip_values(str(exc))}"
            ) from None
        return dict(zip(self._output_names, results, strict=True))

    def warm_up(self) -> None:
        """Run one row of zeros, so the first real request does not pay for allocation."""
        feeds = {spec.name: _zeros(spec) for spec in self.inputs}
        self.run(feeds)


def _spec(arg: Any) -> TensorSpec:
    datatype = ORT_TO_V2.get(arg.type)
    if datatype is None:
        raise ModelLoadError(f"tensor {arg.name!r} has type {arg.type}, which cannot be served")
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or ()))
    return TensorSpec(name=arg.name, datatype=datatype, shape=shape)  # type: ignore[arg-type]


def _zeros(spec: TensorSpec) -> Array:
    dtype = V2_TO_NUMPY.get(spec.datatype)
    if dtype is None:
        raise ModelLoadError(f"input {spec.name!r} of type {spec.datatype} cannot be served")
    # Dynamic dimensions become 1: the smallest valid request.
    return np.zeros([d if d > 0 else 1 for d in spec.shape], dtype=dtype)


__all__ = ["Array", "Session"]
