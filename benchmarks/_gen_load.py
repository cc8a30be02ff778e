"""Closed-loop streaming load on a generative model, each run in its own process.

Owns one measurement at one concurrency: C workers, each sending its share of the
prompts one after the other and timing every streamed piece of every answer. Four
ways to generate, so the benchmark compares them on the same prompts:

- ``grpc``: our daemon's ``ModelStreamInfer`` over ``grpc.aio`` with the V2 protos (one
  stream per worker, requests as Triton's vLLM backend takes them, each answer ended
  by its empty final response). ``tritonclient.grpc`` hands every response to a
  callback on its own reader thread per stream; 16 such threads beside the daemon on a
  2-core box would measure the client, so the load uses asyncio.
- ``openai``: our daemon's ``/v1/completions`` with ``stream: true`` through the official
  ``openai`` client (``AsyncOpenAI``), as a team using that SDK would call it.
- ``engine`` and ``hf`` (in ``_gen_local``): onnxruntime-genai's ``Engine`` and Hugging
  Face ``generate`` in the measuring process itself.

Each run is a child process (``python _gen_load.py`` reading a JSON job on stdin and
writing JSON on stdout), so a client never shares a GIL with a server under test and
the in-process rows have a process, and a peak RSS, of their own.

    from _gen_load import run_child, summarise
    records = run_child("grpc", {"target": "127.0.0.1:8001", "model": "smollm", ...})
    point = summarise(records, concurrency=4)
"""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
STREAM_METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"


@dataclass(frozen=True)
class Record:
    """One answer: when it was sent (the child's clock), when each piece arrived
    (seconds after sending) and how many tokens it generated."""

    sent: float
    arrivals: list[float]
    tokens: int


@dataclass(frozen=True)
class Point:
    """What one kind of generation measured at one concurrency."""

    concurrency: int
    requests: int
    tokens_per_s: float  # generated tokens of every request over the run's wall time
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float  # gaps between consecutive pieces of one answer
    #: Per answer, (last piece - first piece) / (pieces - 1): its decode step time,
    #: whatever the bursts of delivery; the median over answers.
    decode_ms: float
    tokens_each: tuple[int, int]  # fewest and most tokens one request generated
    rss_mb: float  # peak resident memory of the process that generated


def summarise(records: list[Record], concurrency: int, rss_mb: float) -> Point:
    start = min(r.sent for r in records)
    end = max(r.sent + r.arrivals[-1] for r in records if r.arrivals)
    ttft = np.asarray([r.arrivals[0] for r in records if r.arrivals]) * 1e3
    gaps = np.concatenate([np.diff(r.arrivals) for r in records if len(r.arrivals) > 1]) * 1e3
    decode = [
        (r.arrivals[-1] - r.arrivals[0]) / (len(r.arrivals) - 1)
        for r in records
        if len(r.arrivals) > 1
    ]
    tokens = [r.tokens for r in records]
    return Point(
        concurrency=concurrency,
        requests=len(records),
        tokens_per_s=sum(tokens) / (end - start),
        ttft_p50_ms=float(np.percentile(ttft, 50)),
        ttft_p99_ms=float(np.percentile(ttft, 99)),
        itl_p50_ms=float(np.percentile(gaps, 50)) if gaps.size else 0.0,
        decode_ms=float(np.median(decode)) * 1e3 if decode else 0.0,
        tokens_each=(min(tokens), max(tokens)),
        rss_mb=rss_mb,
    )


@dataclass(frozen=True)
class Outcome:
    """What one child process measured: the answers, its peak RSS, what it noted."""

    records: list[Record]
    rss_mb: float
    notes: dict[str, Any]


def run_child(kind: str, job: dict[str, Any], timeout: float = 900.0) -> Outcome:
    """Run one measurement of ``kind`` in a child process."""
    script = HERE / ("_gen_local.py" if kind in ("engine", "hf") else "_gen_load.py")
    completed = subprocess.run(
        [sys.executable, str(script)],
        input=json.dumps({"kind": kind, **job}),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{kind} load failed: {completed.stderr.strip()[-3000:]}")
    answer = json.loads(completed.stdout)
    records = [Record(**r) for r in answer["records"]]
    return Outcome(records, answer["rss_mb"], answer["notes"])


def worker_prompts(job: dict[str, Any]) -> list[list[str]]:
    """The prompts of each worker: worker w takes every C-th prompt from w."""
    prompts: list[str] = job["prompts"]
    c = job["concurrency"]
    return [prompts[w::c] for w in range(c)]


def peak_rss_mb(pid: int | str = "self") -> float:
    """A process's peak resident memory (``VmHWM``; ``ru_maxrss`` would carry the
    parent's peak across ``exec``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def child_main(runners: dict[str, Any]) -> None:
    """Read the job, run it, write the records, the peak RSS and what the runner noted."""
    job = json.loads(sys.stdin.read())
    notes: dict[str, Any] = {}
    records = runners[job["kind"]](job, notes)
    answer = {"records": [asdict(r) for r in records], "rss_mb": peak_rss_mb(), "notes": notes}
    sys.stdout.write(json.dumps(answer))


# -- child process: the daemon's two streaming doors ---------------------------------


def _bytes_tensor(value: bytes) -> bytes:
    """One BYTES element as KServe V2 raw contents: a 4-byte little-endian length first."""
    return struct.pack("<I", len(value)) + value


def stream_request(model: str, prompt: str, max_tokens: int, index: int) -> bytes:
    """A serialised ModelInferRequest as Triton's vLLM backend takes a streamed one."""
    from appliance._proto import grpc_service_pb2 as pb

    request = pb.ModelInferRequest(model_name=model, id=f"r{index}")
    sampling = json.dumps({"max_tokens": max_tokens, "temperature": 0}).encode()
    for name, datatype, raw in (
        ("text_input", "BYTES", _bytes_tensor(prompt.encode())),
        ("stream", "BOOL", b"\x01"),
        ("sampling_parameters", "BYTES", _bytes_tensor(sampling)),
        ("exclude_input_in_output", "BOOL", b"\x01"),
    ):
        tensor = request.inputs.add()
        tensor.name, tensor.datatype = name, datatype
        tensor.shape.append(1)
        request.raw_input_contents.append(raw)
    request.parameters["triton_enable_empty_final_response"].bool_param = True
    return bytes(request.SerializeToString())


def _text_of(response: Any) -> bytes:
    """The ``text_output`` piece of one streamed response (b"" for the empty final one)."""
    for index, tensor in enumerate(response.outputs):
        if tensor.name == "text_output" and index < len(response.raw_output_contents):
            raw = response.raw_output_contents[index]
            return bytes(raw[4:]) if len(raw) >= 4 else b""
    return b""


async def _grpc_worker(channel: Any, requests: list[bytes], records: list[Record]) -> None:
    import grpc

    from appliance._proto import grpc_service_pb2 as pb

    call = channel.stream_stream(
        STREAM_METHOD,
        request_serializer=None,  # the requests are bytes already
        response_deserializer=pb.ModelStreamInferResponse.FromString,
    )()
    for request in requests:
        sent = time.perf_counter()
        await call.write(request)
        arrivals: list[float] = []
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                raise RuntimeError("the stream ended before the final response")
            if message.error_message:
                raise RuntimeError(f"the daemon refused a request: {message.error_message}")
            response = message.infer_response
            if _text_of(response):
                arrivals.append(time.perf_counter() - sent)
            if response.parameters["triton_final_response"].bool_param:
                break
        records.append(Record(sent, arrivals, len(arrivals)))
    await call.done_writing()


def _grpc(job: dict[str, Any], notes: dict[str, Any]) -> list[Record]:
    import grpc

    async def run() -> list[Record]:
        records: list[Record] = []
        async with grpc.aio.insecure_channel(job["target"]) as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
            work = [
                [stream_request(job["model"], p, job["max_tokens"], i) for i, p in enumerate(ps)]
                for ps in worker_prompts(job)
            ]
            await asyncio.gather(*(_grpc_worker(channel, w, records) for w in work))
        return records

    return asyncio.run(run())


async def _openai_worker(
    client: Any, job: dict[str, Any], prompts: list[str], out: list[Record]
) -> None:
    for prompt in prompts:
        sent = time.perf_counter()
        stream = await client.completions.create(
            model=job["model"],
            prompt=prompt,
            max_tokens=job["max_tokens"],
            temperature=0,
            stream=True,
        )
        arrivals: list[float] = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].text:
                arrivals.append(time.perf_counter() - sent)
        out.append(Record(sent, arrivals, len(arrivals)))


def _openai(job: dict[str, Any], notes: dict[str, Any]) -> list[Record]:
    import openai

    async def run() -> list[Record]:
        records: list[Record] = []
        client = openai.AsyncOpenAI(
            base_url=f"http://{job['target']}/v1", api_key="unused", max_retries=0, timeout=600
        )
        async with client:
            await asyncio.gather(
                *(_openai_worker(client, job, ps, records) for ps in worker_prompts(job))
            )
        return records

    return asyncio.run(run())


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))  # appliance's generated protos
    child_main({"grpc": _grpc, "openai": _openai})
