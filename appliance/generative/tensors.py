"""A generative model's V2 tensors, as Triton's vLLM backend names them (its ``src/model.py``).

Inputs: ``text_input`` BYTES [1]; optional ``stream`` BOOL [1], ``sampling_parameters``
BYTES [1] (a JSON object of DESIGN.md's sampling keys), ``exclude_input_in_output``,
``return_finish_reason``, ``return_num_input_tokens``, ``return_num_output_tokens`` BOOL
[1]. Outputs: ``text_output`` BYTES, and when asked ``finish_reason`` BYTES,
``num_input_tokens`` and ``num_output_tokens`` UINT32. Owns parsing and checking those
inputs (every refusal says what was expected and what arrived, never the text) and
building the outputs of one response; knows nothing of protobuf or of the engine.

Like the vLLM backend, a request that does not stream gets the prompt in front of its
text unless ``exclude_input_in_output`` says otherwise, and a streamed one only the new
text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.clip import quoted
from appliance.errors import InvalidInputError
from appliance.generative.types import Piece, SamplingOptions
from appliance.model import Array, RequestTensor
from appliance.package.manifest import TensorSpec
from appliance.tensors import decode

TEXT_INPUT = "text_input"
TEXT_OUTPUT = "text_output"
_FLAGS = (
    "stream",
    "exclude_input_in_output",
    "return_finish_reason",
    "return_num_input_tokens",
    "return_num_output_tokens",
)
SAMPLING = "sampling_parameters"
#: The sampling keys served; vLLM has more (``n``, ``best_of``, ...): refused by name.
SAMPLING_KEYS = (
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "stop",
    "repetition_penalty",
)

INPUTS = (
    TensorSpec(name=TEXT_INPUT, datatype="BYTES", shape=(1,)),
    TensorSpec(name="stream", datatype="BOOL", shape=(1,)),
    TensorSpec(name=SAMPLING, datatype="BYTES", shape=(1,)),
    *(TensorSpec(name=n, datatype="BOOL", shape=(1,)) for n in _FLAGS[1:]),
)
OUTPUTS = (
    TensorSpec(name=TEXT_OUTPUT, datatype="BYTES", shape=(-1,)),
    TensorSpec(name="finish_reason", datatype="BYTES", shape=(-1,)),
    TensorSpec(name="num_input_tokens", datatype="UINT32", shape=(1,)),
    TensorSpec(name="num_output_tokens", datatype="UINT32", shape=(1,)),
)
_INPUT_TYPES = {s.name: s.datatype for s in INPUTS}
_OUTPUT_NAMES = tuple(s.name for s in OUTPUTS)


@dataclass(frozen=True)
class GenerateRequest:
    """One V2 generation request, checked."""

    prompt: str
    options: SamplingOptions
    stream: bool = False
    exclude_input_in_output: bool | None = None  # None: the vLLM default for the mode
    return_finish_reason: bool = False
    return_num_input_tokens: bool = False
    return_num_output_tokens: bool = False

    @property
    def prepend_prompt(self) -> bool:
        if self.exclude_input_in_output is None:
            return not self.stream
        return not self.exclude_input_in_output


def parse_request(
    tensors: Sequence[RequestTensor], requested_outputs: Sequence[str] = ()
) -> GenerateRequest:
    """Check names, types and shapes, decode the text and the sampling JSON."""
    for name in requested_outputs:
        if name not in _OUTPUT_NAMES:
            raise InvalidInputError(
                f"a generative model has no output {quoted(name)}; expected one of "
                f"{', '.join(_OUTPUT_NAMES)}"
            )
    by_name: dict[str, RequestTensor] = {}
    for tensor in tensors:
        if tensor.name not in _INPUT_TYPES:
            raise InvalidInputError(
                f"unknown input {quoted(tensor.name)}; a generative model takes "
                f"{', '.join(_INPUT_TYPES)}"
            )
        if tensor.name in by_name:
            raise InvalidInputError(f"input {quoted(tensor.name)} given twice")
        by_name[tensor.name] = tensor
    if TEXT_INPUT not in by_name:
        raise InvalidInputError(f"missing input {TEXT_INPUT!r} (BYTES [1]: the prompt)")
    values = {name: _scalar(tensor) for name, tensor in by_name.items()}
    prompt = _text(TEXT_INPUT, values[TEXT_INPUT])
    sampling = values.get(SAMPLING)
    options = (
        parse_sampling(_text(SAMPLING, sampling)) if sampling is not None else SamplingOptions()
    )
    flags = {name: bool(values[name]) for name in _FLAGS if name in values}
    return GenerateRequest(
        prompt=prompt,
        options=options,
        stream=flags.get("stream", False),
        exclude_input_in_output=flags.get("exclude_input_in_output"),
        return_finish_reason=flags.get("return_finish_reason", False),
        return_num_input_tokens=flags.get("return_num_input_tokens", False),
        return_num_output_tokens=flags.get("return_num_output_tokens", False),
    )


def _scalar(tensor: RequestTensor) -> Any:
    expected = _INPUT_TYPES[tensor.name]
    if tensor.datatype != expected:
        raise InvalidInputError(
            f"input {quoted(tensor.name)}: expected datatype {expected}, got "
            f"{quoted(tensor.datatype)}"
        )
    if math.prod(tensor.shape) != 1 or len(tensor.shape) > 2:
        raise InvalidInputError(
            f"input {quoted(tensor.name)}: expected shape [1], got {list(tensor.shape)}"
        )
    array = decode(tensor.name, tensor.datatype, tensor.shape, tensor.raw, tensor.values)
    return array.reshape(-1)[0]


def _text(name: str, value: Any) -> str:
    if isinstance(value, bytes | np.bytes_):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInputError(f"input {name!r}: expected UTF-8 text") from None
    if isinstance(value, str):
        return value
    raise InvalidInputError(f"input {name!r}: expected UTF-8 text")


def parse_sampling(text: str) -> SamplingOptions:
    """``sampling_parameters``: a JSON object of ``SAMPLING_KEYS``. Numbers may come as
    JSON numbers or as strings of them (the vLLM backend converts both)."""
    try:
        raw = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"input {SAMPLING!r}: expected a JSON object, got invalid JSON ({exc.msg} at "
            f"position {exc.pos})"
        ) from None
    if not isinstance(raw, dict):
        raise InvalidInputError(
            f"input {SAMPLING!r}: expected a JSON object, got a JSON {type(raw).__name__}"
        )
    unknown = sorted(k for k in raw if k not in SAMPLING_KEYS)
    if unknown:
        raise InvalidInputError(
            f"input {SAMPLING!r}: unknown key {quoted(unknown[0])}; expected some of "
            f"{', '.join(SAMPLING_KEYS)}"
        )
    return SamplingOptions(
        max_tokens=_number(raw, "max_tokens", int, low=1),
        temperature=_number(raw, "temperature", float, low=0.0),
        top_p=_number(raw, "top_p", float, low=0.0, high=1.0, open_low=True),
        top_k=_number(raw, "top_k", int, low=0),
        seed=_number(raw, "seed", int, low=0),
        stop=_stop(raw.get("stop")),
        repetition_penalty=_number(raw, "repetition_penalty", float, low=0.0, open_low=True),
    )


def _number(
    raw: dict[str, Any],
    key: str,
    kind: type[int] | type[float],
    *,
    low: float,
    high: float | None = None,
    open_low: bool = False,
) -> Any:
    value = raw.get(key)
    if value is None:
        return None
    described = "an integer" if kind is int else "a number"
    bound = f"above {low}" if open_low else f"at least {low}"
    if high is not None:
        bound += f" and at most {high}"
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError
        number = kind(value)
        if kind is int and isinstance(value, float) and value != number:
            raise ValueError
    except (ValueError, OverflowError):
        raise InvalidInputError(
            f"{SAMPLING}.{key}: expected {described} {bound}, got a JSON {type(value).__name__}"
        ) from None
    if (
        not math.isfinite(number)
        or number < low
        or (open_low and number == low)
        or (high is not None and number > high)
    ):
        raise InvalidInputError(f"{SAMPLING}.{key}: expected {described} {bound}, got {number}")
    return number


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise InvalidInputError(f"{SAMPLING}.stop: expected a non-empty string or a list of them")
    return tuple(stops)


def response_outputs(
    request: GenerateRequest,
    text: str,
    *,
    finish_reason: str,
    input_tokens: int,
    output_tokens: int,
    requested: Sequence[str] = (),
) -> dict[str, Array]:
    """The outputs of one response: ``text_output`` always, the others when asked (by the
    ``return_*`` flags or by name), all shaped [1]."""
    wanted = set(requested)
    outputs: dict[str, Array] = {}
    if not wanted or TEXT_OUTPUT in wanted:
        outputs[TEXT_OUTPUT] = np.array([text.encode("utf-8")], dtype=np.object_)
    if request.return_finish_reason or "finish_reason" in wanted:
        outputs["finish_reason"] = np.array([finish_reason.encode()], dtype=np.object_)
    if request.return_num_input_tokens or "num_input_tokens" in wanted:
        outputs["num_input_tokens"] = np.array([input_tokens], dtype=np.uint32)
    if request.return_num_output_tokens or "num_output_tokens" in wanted:
        outputs["num_output_tokens"] = np.array([output_tokens], dtype=np.uint32)
    return outputs


def piece_outputs(request: GenerateRequest, piece: Piece, first: bool) -> dict[str, Array]:
    """One streamed response: the new text (the prompt before the first, when asked)."""
    text = request.prompt + piece.text if first and request.prepend_prompt else piece.text
    return response_outputs(
        request,
        text,
        finish_reason=piece.finish_reason or "",
        input_tokens=piece.prompt_tokens,
        output_tokens=piece.completion_tokens if piece.finish_reason else 0,
    )


__all__ = [
    "INPUTS",
    "OUTPUTS",
    "SAMPLING_KEYS",
    "GenerateRequest",
    "parse_request",
    "parse_sampling",
    "piece_outputs",
    "response_outputs",
]
