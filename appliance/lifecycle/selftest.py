"""The on-box self-test: a package's golden cases, run on this box's execution providers.

A version may serve only if every golden output is within the package's tolerance
(numpy ``allclose``: |got - expected| <= atol + rtol * |expected|) when run by the
session that will serve it. This catches a model that loads but computes something
else here: a provider bug, an fp16 engine drifting too far, a tampered-then-re-signed
graph. Error messages name the case, the output, the worst element and the tolerance;
never the tensor contents.

A generative version (``task: text-generation``) is checked the same way with its own
golden cases: each prompt, decoded greedily by the engine that will serve it, must give
exactly the token ids recorded at build (end-of-sequence ignored: engines differ on
emitting it). The message names the case and the first position that differs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np

from appliance.errors import PackageError, SelfTestError
from appliance.package.generative import strip_eos
from appliance.package.manifest import GenerationGolden, Golden, TensorData
from appliance.tensors import V2_TO_NUMPY

Array = np.ndarray[Any, Any]
RunFn = Callable[[dict[str, Array]], Mapping[str, Array]]
#: (prompt, max new tokens) -> the greedy continuation's token ids, prompt excluded.
GenerateFn = Callable[[str, int], Sequence[int]]


def tensor_array(tensor: TensorData) -> Array:
    dtype = V2_TO_NUMPY.get(tensor.datatype)
    if dtype is None:
        raise PackageError(f"golden tensor of type {tensor.datatype} cannot be compared")
    return np.asarray(tensor.data, dtype=dtype).reshape(tensor.shape)


def run_self_test(label: str, golden: Golden | None, run: RunFn, providers: str) -> int:
    """Run every golden case through ``run``; return how many passed (all, or raise)."""
    if golden is None:
        raise PackageError(
            f"{label}: expected golden cases in model.json for the on-box self-test, found none"
        )
    for index, case in enumerate(golden.cases):
        feeds = {name: tensor_array(t) for name, t in case.inputs.items()}
        outputs = run(feeds)
        for name, expected_tensor in case.outputs.items():
            if name not in outputs:
                raise SelfTestError(
                    f"{label}: golden case {index} expects output {name!r}; the model "
                    f"gave {sorted(outputs)}"
                )
            where = f"{label}: golden case {index}, output {name!r}"
            _compare(where, tensor_array(expected_tensor), outputs[name], golden, providers)
    return len(golden.cases)


def _compare(where: str, expected: Array, got: Array, golden: Golden, providers: str) -> None:
    got = np.asarray(got)
    if got.shape != expected.shape:
        raise SelfTestError(
            f"{where}: expected shape {list(expected.shape)}, got {list(got.shape)} on {providers}"
        )
    if np.allclose(got, expected, rtol=golden.rtol, atol=golden.atol, equal_nan=True):
        return
    diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    worst = int(np.nanargmax(diff))
    raise SelfTestError(
        f"{where}: expected within rtol={golden.rtol} "
        f"atol={golden.atol} of the package's values, got a difference of "
        f"{float(diff.flat[worst]):.3g} at flat index {worst} on {providers}; "
        "the model computes something else on this box"
    )


def run_generation_self_test(
    label: str,
    golden: GenerationGolden | None,
    generate: GenerateFn,
    eos: Collection[int],
    providers: str,
) -> int:
    """Run every golden prompt through ``generate``; return how many passed (all, or raise)."""
    if golden is None:
        raise PackageError(
            f"{label}: expected golden prompts (generation_golden) in model.json for the "
            "on-box self-test, found none"
        )
    for index, case in enumerate(golden.cases):
        got = list(strip_eos(generate(case.prompt, case.max_tokens), frozenset(eos)))
        expected = list(case.token_ids)
        if got == expected:
            continue
        differ = next(
            (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
            min(len(got), len(expected)),
        )
        raise SelfTestError(
            f"{label}: golden prompt {index}: expected the {len(expected)} greedy tokens "
            f"recorded at build, got {len(got)} differing from token {differ} on "
            f"{providers}; the model generates something else on this box"
        )
    return len(golden.cases)


__all__ = ["GenerateFn", "run_generation_self_test", "run_self_test", "tensor_array"]
