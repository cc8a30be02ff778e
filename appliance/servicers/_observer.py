"""The observer: every RPC timed and its outcome recorded, in this one layer.

Inside the error boundary (so it sees our exceptions, not gRPC aborts) and outside the
gate (so refused calls are logged too). Per RPC it writes one request-log line
(``RequestLog``: model, version, shapes, caller, status, latency; probes only when they
fail). Per inference request (ModelInfer, and each message of a ModelStreamInfer
stream) it reports the outcome to ``RequestRecorder``: request metrics and the served
version's V2 statistics. Only admitted calls count there, as before the gate existed
in this form: an unauthenticated caller's attempts are audited, not served.

A stream's messages are matched to their responses by request ``id`` (oldest first
among equal ids), and a request counts once its final response is out: with decoupled
streaming (several responses per request) that is the one whose
``triton_final_response`` parameter is true, or the one carrying an error.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import grpc

from appliance.errors import status_name
from appliance.logs import describe_request
from appliance.monitoring.requests import RequestRecorder
from appliance.servicers import _convert as convert
from appliance.servicers._boundary import Unparsed
from appliance.servicers._wrapping import Call, Layer, Method, Stream, Unary

_V2 = "inference.GRPCInferenceService"
_INFER = f"/{_V2}/ModelInfer"
_STREAM_INFER = f"/{_V2}/ModelStreamInfer"


def outcome(exc: BaseException, call: Call) -> str:
    """The status an RPC ended in; an abort from a servicer keeps the code it set."""
    if isinstance(exc, grpc.aio.AbortError):
        code = call.context.code()
        return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    return status_name(exc)


class Observer(Layer):
    def __init__(self, recorder: RequestRecorder, quiet: Callable[[str], bool]):
        """``quiet(method path)``: probes, logged only when they fail."""
        self.recorder = recorder
        self._quiet_of = quiet
        self._quiet: dict[str, bool] = {}

    def prepare(self, method: Method) -> bool:
        self._quiet[method.path] = self._quiet_of(method.path)
        return True

    def _log(
        self,
        call: Call,
        request: Any,
        response: Any,
        status: str,
        start: float,
        *,
        peer: str | None = None,
    ) -> None:
        quiet = self._quiet[call.method.path]
        log = self.recorder.log
        if not log.wants(status, quiet):
            return  # the common case on a busy box: no line, so no peer lookup either
        described = (
            {}
            if call.method.request_streaming or isinstance(request, Unparsed)
            else describe_request(request, response)
        )
        log.log(
            rpc=call.method.name,
            fields=described,
            caller=call.identity.name if call.identity is not None else "unknown",
            peer=peer if peer is not None else call.context.peer(),
            status=status,
            seconds=time.perf_counter() - start,
            quiet=quiet,
        )

    async def unary(self, call: Call, request: Any, proceed: Unary) -> Any:
        start = time.perf_counter()
        status, response = "OK", None
        try:
            response = await proceed(call, request)
            return response
        except BaseException as exc:
            status = outcome(exc, call)
            raise
        finally:
            if (
                call.method.path == _INFER
                and call.identity is not None
                and not isinstance(request, Unparsed)
            ):
                self.recorder.inference(
                    request.model_name,
                    request.model_version,
                    status,
                    time.perf_counter() - start,
                    served=response.model_version if response is not None else "",
                )
            self._log(call, request, response, status, start)

    async def stream(self, call: Call, request: Any, proceed: Stream) -> AsyncIterator[Any]:
        start = time.perf_counter()
        status = "OK"
        # Read now: once a stream is cancelled (by its client, or by the server on shutdown
        # with grace 0) gRPC may free the call before the finally below runs (asyncio closes
        # the generator later), and peer() on a freed call crashes grpc.
        peer = call.context.peer()
        messages = _Messages(self.recorder) if call.method.path == _STREAM_INFER else None
        try:
            requests = messages.watch(request) if messages is not None else request
            async for response in proceed(call, requests):
                if messages is not None:
                    messages.answered(response)
                yield response
        except BaseException as exc:
            status = outcome(exc, call)
            raise
        finally:
            if messages is not None:
                messages.unanswered("CANCELLED" if status == "OK" else status)
            self._log(call, request, None, status, start, peer=peer)


class _Messages:
    """The inference requests of one ModelStreamInfer stream, from arrival to answer."""

    def __init__(self, recorder: RequestRecorder):
        self._recorder = recorder
        # id -> (model, version asked for, arrival), oldest first
        self._pending: dict[str, deque[tuple[str, str, float]]] = {}

    async def watch(self, requests: AsyncIterable[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            waiting = self._pending.setdefault(request.id, deque())
            waiting.append((request.model_name, request.model_version, time.perf_counter()))
            yield request

    def answered(self, response: Any) -> None:
        infer = response.infer_response
        parameters = infer.parameters
        if (
            not response.error_message
            and "triton_final_response" in parameters
            and not parameters["triton_final_response"].bool_param
        ):
            return  # more responses of this request follow
        waiting = self._pending.get(infer.id)
        if not waiting:
            return
        model, version, arrived = waiting.popleft()
        if not waiting:
            del self._pending[infer.id]
        status = convert.stream_error_status(response.error_message)
        served = infer.model_version if status == "OK" else ""
        self._recorder.inference(
            model, version, status, time.perf_counter() - arrived, served=served
        )

    def unanswered(self, status: str) -> None:
        """The stream ended with these still open: they end as the stream did."""
        now = time.perf_counter()
        for waiting in self._pending.values():
            for model, version, arrived in waiting:
                self._recorder.inference(model, version, status, now - arrived)
        self._pending.clear()


__all__ = ["Observer", "outcome"]
