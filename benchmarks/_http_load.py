"""A closed-loop HTTP/1.1 load generator, run in its own process: the REST twin of ``_load``.

Owns one measurement: N concurrent workers, each on its own keep-alive connection,
sending one prepared request (method, path, headers and body serialised once in the
parent), reading the whole answer and sending again, for a fixed time after a warm-up.
It speaks just enough HTTP/1.1 over asyncio streams (status line, ``Content-Length``),
so the client costs the same against every server, as the gRPC generator does with
pre-serialised bytes. A status other than 200 counts as an error.

    from _http_load import run_http_load, v2_infer_request
    request = v2_infer_request("breast_cancer", {"input": x})  # bytes
    result = run_http_load("127.0.0.1:8000", request, concurrency=16, duration=10.0)
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from _load import LoadResult


def http_request(
    method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
) -> bytes:
    """The bytes of one HTTP/1.1 request (keep-alive), ready to send as they are."""
    lines = [f"{method} {path} HTTP/1.1", "Host: bench", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def run_http_load(
    target: str,
    request: bytes,
    concurrency: int,
    duration: float,
    *,
    warmup: float = 1.0,
    timeout: float = 30.0,
) -> LoadResult:
    """Drive ``target`` (HOST:PORT) for ``duration`` seconds, in a child process."""
    job = {
        "target": target,
        "request": base64.b64encode(request).decode(),
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
        raise RuntimeError(f"HTTP load generator failed: {completed.stderr.strip()[-2000:]}")
    return LoadResult(**json.loads(completed.stdout))


# -- child process ------------------------------------------------------------------

_BUFFER = 16 * 1024 * 1024


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """Send the request, read the whole response; return its status code."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


class _Loop:
    def __init__(self, job: dict[str, object]):
        self.job = job
        self.request = base64.b64decode(str(job["request"]))
        self.latencies_ns: list[int] = []
        self.errors = 0
        self.first_error = ""
        self.sent = 0
        self.measuring = False
        self.stopping = False

    async def worker(self) -> None:
        host, _, port = str(self.job["target"]).rpartition(":")
        # A large buffer: responses of a few hundred KB (MiniLM's hidden states) are read in
        # one go instead of pausing the transport at the default 64 KiB.
        reader, writer = await asyncio.open_connection(host, int(port), limit=_BUFFER)
        try:
            while not self.stopping:
                start = time.perf_counter_ns()
                status = await asyncio.wait_for(
                    _exchange(reader, writer, self.request), float(str(self.job["timeout"]))
                )
                self.sent += 1
                if not self.measuring:
                    continue
                if status == 200:
                    self.latencies_ns.append(time.perf_counter_ns() - start)
                else:
                    self.errors += 1
                    self.first_error = self.first_error or f"HTTP {status}"
        finally:
            writer.close()

    async def run(self) -> LoadResult:
        workers = [
            asyncio.create_task(self.worker()) for _ in range(int(str(self.job["concurrency"])))
        ]
        await asyncio.sleep(float(str(self.job["warmup"])))
        self.measuring = True
        start = time.perf_counter()
        await asyncio.sleep(float(str(self.job["duration"])))
        self.measuring = False
        seconds = time.perf_counter() - start
        self.stopping = True
        await asyncio.gather(*workers)
        return self.result(seconds)

    def result(self, seconds: float) -> LoadResult:
        import numpy as np

        ms = np.asarray(self.latencies_ns, dtype=np.float64) / 1e6
        empty = ms.size == 0
        return LoadResult(
            concurrency=int(str(self.job["concurrency"])),
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


def _main() -> None:
    from dataclasses import asdict

    job = json.loads(sys.stdin.read())
    result = asyncio.run(_Loop(job).run())
    sys.stdout.write(json.dumps(asdict(result)))


if __name__ == "__main__":
    _main()


def v2_infer_request(model: str, inputs: Mapping[str, Any]) -> bytes:
    """A V2 REST infer request as ``tritonclient.http`` sends it: a JSON header, then each
    input's raw bytes (Triton's binary extension), every output asked for in binary."""
    import numpy as np

    from appliance.tensors import encode, v2_datatype

    arrays = {name: np.asarray(value) for name, value in inputs.items()}
    data = [encode(a) for a in arrays.values()]
    header = {
        "inputs": [
            {
                "name": name,
                "datatype": v2_datatype(array),
                "shape": list(array.shape),
                "parameters": {"binary_data_size": len(raw)},
            }
            for (name, array), raw in zip(arrays.items(), data, strict=True)
        ],
        "parameters": {"binary_data_output": True},
    }
    text = json.dumps(header).encode()
    return http_request(
        "POST",
        f"/v2/models/{model}/infer",
        b"".join([text, *data]),
        {"Inference-Header-Content-Length": str(len(text))},
    )
