"""The on-box self-test: a package's golden cases, run on this box's execution providers.

A version may serve only if every golden output is within the package's tolerance
(numpy ``allclose``: |got - expected| <= atol + rtol * |expected|) when run by the
session that will serve it. This catches a model that loads but computes something
else here: a provider bug, an fp16 engine drifting too far, a tampered-then-re-signed
graph. Error messages name the case, the output, the worst element and the tolerance;
never the tensor contents.

A generative version (``task: text-generation``) is checked the same way with its own
golden cases: each prompt, decoded greedily by the engine that will serve it, must give
the continuation whose token ids were recorded at build. The message names the case
and the token counts, never the text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from appliance.errors import PackageError, SelfTestError
from appliance.generative.types import SamplingOptions
from appliance.package.manifest import GenerationGolden, Golden, TensorData
from appliance.tensors import V2_TO_NUMPY

if TYPE_CHECKING:
    from appliance.generative import GenerativeVersion

Array = np.ndarray[Any, Any]
RunFn = Callable[[dict[str, Array]], Mapping[str, Array]]
#: Seconds one golden prompt may take: generous, a busy box must not fail a good model.
_GENERATION_BUDGET_S = 120.0


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


async def run_generation_self_test(
    label: str, golden: GenerationGolden | None, model: GenerativeVersion
) -> int:
    """Run every golden prompt through the engine that will serve; return how many passed.

    Greedy (temperature 0) with the case's token budget. The engine streams text, so
    the recorded token ids are decoded as it decodes them (the model's tokenizer, one
    token at a time: a byte-level token that ends inside a character decodes to nothing
    until the character is complete) and the texts compared; the count of generated
    tokens must match the recorded ids (one more allowed: an end-of-sequence token the
    engine counted).
    """
    if golden is None:
        raise PackageError(
            f"{label}: expected golden prompts (generation_golden) in model.json for the "
            "on-box self-test, found none"
        )
    providers = ",".join(model.providers)
    for index, case in enumerate(golden.cases):
        options = SamplingOptions(max_tokens=case.max_tokens, temperature=0.0)
        deadline = time.monotonic() + _GENERATION_BUDGET_S
        done = await model.generate(case.prompt, options, deadline)
        expected = _streamed_text(model.engine.tokenizer, case.token_ids)
        count = len(case.token_ids)
        if done.text != expected or not count <= done.completion_tokens <= count + 1:
            raise SelfTestError(
                f"{label}: golden prompt {index}: expected the {count} greedy tokens "
                f"recorded at build, got {done.completion_tokens} tokens of different text "
                f"on {providers}; the model generates something else on this box"
            )
    return len(golden.cases)


def _streamed_text(tokenizer: Any, token_ids: Sequence[int]) -> str:
    stream = tokenizer.create_stream()
    return "".join(str(stream.decode(int(token))) for token in token_ids)


__all__ = ["run_generation_self_test", "run_self_test", "tensor_array"]
