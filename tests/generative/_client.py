"""tritonclient helpers for the generative tests: V2 inputs as the vLLM backend's clients
build them, and a stream that collects its responses by request id."""

from __future__ import annotations

import json
import queue
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tritonclient.grpc as triton

from tests.generative.conftest import LM


def inputs(
    prompt: str,
    sampling: dict[str, Any] | str | None = None,
    *,
    stream: bool | None = None,
    **flags: bool,
) -> list[triton.InferInput]:
    """``text_input``, and ``sampling_parameters`` / ``stream`` / flags when given."""
    made = [_bytes("text_input", prompt.encode())]
    if sampling is not None:
        text = sampling if isinstance(sampling, str) else json.dumps(sampling)
        made.append(_bytes("sampling_parameters", text.encode()))
    if stream is not None:
        made.append(_bool("stream", stream))
    made.extend(_bool(name, value) for name, value in flags.items())
    return made


def _bytes(name: str, value: bytes) -> triton.InferInput:
    tensor = triton.InferInput(name, [1], "BYTES")
    tensor.set_data_from_numpy(np.array([value], dtype=np.object_))
    return tensor


def _bool(name: str, value: bool) -> triton.InferInput:
    tensor = triton.InferInput(name, [1], "BOOL")
    tensor.set_data_from_numpy(np.array([value]))
    return tensor


@dataclass
class Answer:
    """Every response of one request on a stream, in arrival order."""

    texts: list[str] = field(default_factory=list)
    finals: list[bool] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    @property
    def text(self) -> str:
        return "".join(self.texts)

    @property
    def done(self) -> bool:
        return bool(self.error) or (bool(self.finals) and self.finals[-1])


class Stream:
    """``with Stream(client) as s: s.send(...); s.collect(ids)``."""

    def __init__(self, client: triton.InferenceServerClient):
        self.client = client
        self._events: queue.Queue[tuple[Any, Any]] = queue.Queue()
        self.order: list[str] = []  # request id of each response, as they came

    def __enter__(self) -> Stream:
        self.client.start_stream(callback=lambda result, error: self._events.put((result, error)))
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.stop_stream(cancel_requests=True)

    def send(
        self, request_id: str, tensors: list[triton.InferInput], *, empty_final: bool = True
    ) -> None:
        self.client.async_stream_infer(
            LM, tensors, request_id=request_id, enable_empty_final_response=empty_final
        )

    def collect(self, ids: list[str], timeout: float = 60.0) -> dict[str, Answer]:
        answers = {i: Answer() for i in ids}
        while not all(a.done for a in answers.values()):
            result, error = self._events.get(timeout=timeout)
            if error is not None:
                # tritonclient gives a stream error without the request id: the oldest open.
                open_ids = [i for i, a in answers.items() if not a.done]
                answers[open_ids[0]].error = str(error)
                continue
            response = result.get_response()
            answer = answers[response.id]
            self.order.append(response.id)
            answer.finals.append(response.parameters["triton_final_response"].bool_param)
            outputs = {o.name: result.as_numpy(o.name) for o in response.outputs}
            answer.outputs.append(outputs)
            if "text_output" in outputs:
                answer.texts.append(outputs["text_output"][0].decode())
        return answers
