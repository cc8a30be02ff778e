"""A closed-loop KServe V2 gRPC load generator, run in its own process.

Owns one measurement: N concurrent workers on one ``grpc.aio`` channel, each sending
ModelInfer, waiting for the answer and sending again, for a fixed time after a warm-up.
It does not start servers or build models; the benchmarks that import it do.

The request is serialised once in the parent and sent as bytes (no per-request
protobuf work in the client), so the client costs the same against every server and
the comparison between servers stays fair on a small box. The loop runs in a child
process (``python _load.py`` reading a JSON job on stdin) so it never shares a GIL
with a server under test.

    from _load import infer_request, run_load
    request = infer_request("breast_cancer", {"input": x})  # bytes
    result = run_load("127.0.0.1:8001", request, concurrency=16, duration=10.0)
    result.throughput, result.p50_ms, result.p99_ms, result.errors

A list of requests instead of one is sent in turn (each worker takes the next), for
workloads whose cost depends on the data (a cascade).
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

METHOD = "/inference.GRPCInferenceService/ModelInfer"
#: tritonclient's limits, so large tensors (MiniLM batches) go through.
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
]


@dataclass(frozen=True)
class LoadResult:
    """What one closed-loop run measured (the warm-up excluded)."""

    concurrency: int
    seconds: float
    requests: int  # answered OK
    errors: int
    throughput: float  # OK requests per second
    p50_ms: float
    p99_ms: float
    mean_ms: float
    first_error: str = ""
    #: Every request answered, warm-up and errors included (to divide server CPU by).
    sent: int = 0


def infer_request(
    model: str, inputs: Mapping[str, Any], version: str = "", outputs: tuple[str, ...] = ()
) -> bytes:
    """A serialised ModelInferRequest carrying ``inputs`` (numpy arrays) as raw contents."""
    import numpy as np

    from appliance._proto import grpc_service_pb2 as pb
    from appliance.tensors import encode, v2_datatype

    request = pb.ModelInferRequest(model_name=model, model_version=version)
    for name, value in inputs.items():
        array = np.asarray(value)
        tensor = request.inputs.add()
        tensor.name = name
        tensor.datatype = v2_datatype(array)
        tensor.shape.extend(array.shape)
        request.raw_input_contents.append(encode(array))
    for name in outputs:
        request.outputs.add().name = name
    return bytes(request.SerializeToString())


def run_load(
    target: str,
    request: bytes | Sequence[bytes],
    concurrency: int,
    duration: float,
    *,
    warmup: float = 1.0,
    timeout: float = 30.0,
) -> LoadResult:
    """Drive ``target`` (HOST:PORT) for ``duration`` seconds, in a child process."""
    requests = [request] if isinstance(request, bytes) else list(request)
    job = {
        "target": target,
        "requests": [base64.b64encode(r).decode() for r in requests],
        "concurrency": concurrency,
        "duration": duration,
        "warmup": warmup,
        "timeout": timeout,
    }
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve())],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=warmup + duration + timeout + 30,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"load generator failed: {completed.stderr.strip()[-2000:]}")
    return LoadResult(**json.loads(completed.stdout))


# -- child process ------------------------------------------------------------------


class _Loop:
    """The workers of one run and what they saw."""

    def __init__(self, job: dict[str, Any]):
        self.job = job
        self.requests = [base64.b64decode(r) for r in job["requests"]]
        self.next = 0
        self.latencies_ns: list[int] = []
        self.errors = 0
        self.first_error = ""
        self.sent = 0
        self.measuring = False
        self.stopping = False

    async def worker(self, call: Any) -> None:
        timeout = self.job["timeout"]
        while not self.stopping:
            request = self.requests[self.next % len(self.requests)]
            self.next += 1
            start = time.perf_counter_ns()
            try:
                await call(request, timeout=timeout)
            except Exception as exc:  # grpc.aio.AioRpcError, counted not raised
                self.sent += 1
                if self.measuring:
                    self.errors += 1
                    self.first_error = self.first_error or _describe(exc)
                continue
            self.sent += 1
            if self.measuring:
                self.latencies_ns.append(time.perf_counter_ns() - start)

    async def run(self) -> LoadResult:
        import grpc

        async with grpc.aio.insecure_channel(self.job["target"], _CHANNEL_OPTIONS) as channel:
            await asyncio.wait_for(channel.channel_ready(), self.job["timeout"])
            # No (de)serialisers: bytes go out as they are and come back as bytes.
            call = channel.unary_unary(METHOD, None, None)
            tasks = [asyncio.create_task(self.worker(call)) for _ in range(self.job["concurrency"])]
            await asyncio.sleep(self.job["warmup"])
            self.measuring = True
            start = time.perf_counter()
            await asyncio.sleep(self.job["duration"])
            self.measuring = False
            seconds = time.perf_counter() - start
            self.stopping = True
            await asyncio.gather(*tasks)
        return self.result(seconds)

    def result(self, seconds: float) -> LoadResult:
        import numpy as np

        ms = np.asarray(self.latencies_ns, dtype=np.float64) / 1e6
        empty = ms.size == 0
        return LoadResult(
            concurrency=self.job["concurrency"],
            seconds=seconds,
            requests=int(ms.size),
            errors=self.errors,
            throughput=ms.size / seconds,
            p50_ms=0.0 if empty else float(np.percentile(ms, 50)),
            p99_ms=0.0 if empty else float(np.percentile(ms, 99)),
            mean_ms=0.0 if empty else float(ms.mean()),
            first_error=self.first_error,
            sent=self.sent,
        )


def _describe(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    if callable(code) and callable(details):
        return f"{code().name}: {details()}"
    return repr(exc)


def _main() -> None:
    job = json.loads(sys.stdin.read())
    result = asyncio.run(_Loop(job).run())
    sys.stdout.write(json.dumps(asdict(result)))


if __name__ == "__main__":
    _main()
