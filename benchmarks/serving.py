"""Serving benchmark: our daemon against in-process ONNX Runtime and a bare grpc.aio servicer.

Runs in one go on one box, side by side, closed loop at concurrency 1, 16 and 64, on two
workloads: the embedded default model (overhead-bound: a 30-feature logistic regression)
and MiniLM-L6 dynamic int8 (compute-bound: single-row requests of 128 tokens). Writes
``benchmarks/results/serving.md`` with the machine, versions, a table and the ratios
checked against the serving issue's targets.

    python benchmarks/serving.py [--duration SECONDS] [--out FILE]
        [--compare-with OTHER_CHECKOUT --rounds N] [--skip-full]
    python benchmarks/serving.py --http [--runs N] [--duration SECONDS] [--out FILE]

``--compare-with`` adds the before/after section: the default model at concurrency 1
and 16 against the bare servicer, this checkout's daemon and the other checkout's
daemon, one after the other in every round, the order reversed every other round, so
a noisy shared box hits all three alike; and, when ``py-spy`` is installed, a profile of
this daemon under the concurrency-16 load.

``--http`` compares the daemon's two ports instead: KServe V2 REST (binary tensors, as
``tritonclient.http`` sends them) against gRPC on the same daemon, and ``/v1/embeddings``
for MiniLM, at concurrency 1 and 16, into ``benchmarks/results/serving-http.md``.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # the daemon runner shared with the tests

from _http_load import http_request, run_http_load, v2_infer_request  # noqa: E402
from _load import LoadResult, infer_request, run_load  # noqa: E402
from _minilm import minilm_onnx, token_batch  # noqa: E402

from appliance.repository import EMBEDDED_ROOT  # noqa: E402
from tests._daemon import DaemonProcess, free_port  # noqa: E402

DEFAULT_MODEL = EMBEDDED_ROOT / "breast_cancer" / "1" / "model.onnx"
CONCURRENCY = (1, 16, 64)


@dataclass
class Row:
    workload: str
    server: str
    concurrency: int | str
    throughput: float  # requests (rows) per second
    p50_ms: float
    p99_ms: float
    errors: int = 0


def in_process(
    path: Path, feeds: dict[str, np.ndarray], seconds: float
) -> tuple[float, float, float]:
    """Rows per second, p50 and p99 of ``session.run`` called back to back."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rows = next(iter(feeds.values())).shape[0]
    for _ in range(5):
        session.run(None, feeds)
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    total = sum(times)
    times.sort()
    return (
        rows * len(times) / total,
        times[len(times) // 2] * 1e3,
        times[int(len(times) * 0.99)] * 1e3,
    )


class BareServer:
    def __init__(self, model: Path):
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "_bare_server.py"), str(model), str(self.port)], env=env
        )
        time.sleep(3.0)  # imports onnxruntime and grpc, loads the model

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def measure(workload: str, server: str, address: str, request: bytes, duration: float) -> list[Row]:
    rows = []
    for concurrency in CONCURRENCY:
        result: LoadResult = run_load(address, request, concurrency, duration, warmup=1.0)
        print(
            f"  {workload:10s} {server:22s} c={concurrency:<3d} {result.throughput:8.0f}/s "
            f"p50 {result.p50_ms:6.2f} ms p99 {result.p99_ms:6.2f} ms errors {result.errors}",
            flush=True,
        )
        rows.append(
            Row(
                workload,
                server,
                concurrency,
                result.throughput,
                result.p50_ms,
                result.p99_ms,
                result.errors,
            )
        )
    return rows


def daemon_rows(
    workload: str, repo: Path | None, request: bytes, duration: float, work: Path
) -> tuple[list[Row], float]:
    rows: list[Row] = []
    rss_mb = 0.0
    for batching in (True, False):
        scratch = Path(tempfile.mkdtemp(dir=work))
        config: dict[str, Any] = {"batching": {"enabled": batching}}
        if repo is not None:
            config["repository"] = {"path": str(repo)}
        with DaemonProcess(scratch, config) as daemon:
            name = f"daemon, batching {'on' if batching else 'off'}"
            rows += measure(workload, name, daemon.address, request, duration)
            assert daemon.process is not None
            rss_mb = max(rss_mb, psutil.Process(daemon.process.pid).memory_info().rss / 2**20)
    return rows, rss_mb


def run(duration: float, out: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    results: list[Row] = []
    memory: dict[str, float] = {}

    print("default model (breast_cancer, 1 row x 30 features)", flush=True)
    x = np.random.default_rng(0).normal(10, 3, size=(1, 30)).astype(np.float32)
    request = infer_request("breast_cancer", {"input": x})
    thr, p50, p99 = in_process(DEFAULT_MODEL, {"input": x}, duration)
    results.append(Row("default", "in-process ORT, batch 1", "-", thr, p50, p99))
    bare = BareServer(DEFAULT_MODEL)
    try:
        results += measure("default", "bare grpc.aio servicer", bare.address, request, duration)
    finally:
        bare.stop()
    rows, memory["default"] = daemon_rows("default", None, request, duration, work)
    results += rows

    print("MiniLM-L6 int8 (1 row x 128 tokens)", flush=True)
    _, int8 = minilm_onnx()
    repo = work / "minilm-repo"
    (repo / "minilm" / "1").mkdir(parents=True)
    (repo / "minilm" / "1" / "model.onnx").symlink_to(int8)
    one = token_batch(1)
    request = infer_request("minilm", one)
    for rows_per_call in (1, 16):
        thr, p50, p99 = in_process(int8, token_batch(rows_per_call), duration)
        results.append(Row("minilm", f"in-process ORT, batch {rows_per_call}", "-", thr, p50, p99))
    bare = BareServer(int8)
    try:
        results += measure("minilm", "bare grpc.aio servicer", bare.address, request, duration)
    finally:
        bare.stop()
    rows, memory["minilm"] = daemon_rows("minilm", repo, request, duration, work)
    results += rows
    out.write_text(report(results, memory, duration))
    print(f"wrote {out}")


def _find(rows: list[Row], workload: str, server: str, concurrency: int | str) -> Row:
    return next(
        r for r in rows if (r.workload, r.server, r.concurrency) == (workload, server, concurrency)
    )


def checks(rows: list[Row], memory: dict[str, float]) -> list[tuple[str, str, float, float, bool]]:
    """(target, measured as, value, threshold, met) for each target of the issue."""
    on, off, bare = "daemon, batching on", "daemon, batching off", "bare grpc.aio servicer"
    ort16 = "in-process ORT, batch 16"
    d16 = _find(rows, "default", on, 16).throughput / _find(rows, "default", bare, 16).throughput
    d1 = _find(rows, "default", on, 1).p50_ms / _find(rows, "default", bare, 1).p50_ms
    m_ort = _find(rows, "minilm", on, 16).throughput / _find(rows, "minilm", ort16, "-").throughput
    m_off = _find(rows, "minilm", on, 16).throughput / _find(rows, "minilm", off, 16).throughput
    rss = memory["default"]
    return [
        ("default, c=16: throughput vs bare servicer", "ratio, at least", d16, 0.85, d16 >= 0.85),
        ("default, c=1: p50 latency vs bare servicer", "ratio, at most", d1, 1.3, d1 <= 1.3),
        (
            "MiniLM int8, c=16: throughput vs in-process ORT, batch 16",
            "ratio, at least",
            m_ort,
            0.9,
            m_ort >= 0.9,
        ),
        ("MiniLM int8, c=16: batching on vs off", "ratio, at least", m_off, 1.3, m_off >= 1.3),
        ("daemon RSS serving the default model", "MB, at most", rss, 150.0, rss <= 150.0),
    ]


WHY_MISSED = """
Read a single run with care: on a shared 2-core box the other load moves every figure
(the bare servicer's own throughput at concurrency 16 moved between about 900 and 2,400
requests per second within one hour), so a ratio from one run says little; the
interleaved before/after section (``--compare-with``) pairs the servers round by round
and adds each server's CPU per request, which other load moves less. Where the time goes
on the overhead-bound default model: the event-loop thread is the bottleneck of every
Python gRPC server, and most of its time is gRPC's own machinery, the same as in the
bare servicer; see the profile section for the share of our request path. The
compute-bound MiniLM figures depend most on the box's other load: ONNX Runtime's
intra-op threads compete with it for the two cores, so batching gains little there.
"""


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def report(rows: list[Row], memory: dict[str, float], duration: float) -> str:
    import grpc

    import appliance

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    providers = ", ".join(ort.get_available_providers())
    lines = [
        "# Serving benchmark",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by "
        f"`python benchmarks/serving.py --duration {duration:g}`.",
        "",
        f"- Machine: {os.cpu_count()} cores ({_cpu_name()}), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, no GPU; "
        f"load average at the end {load}",
        f"- Python {platform.python_version()}, onnxruntime {ort.__version__} "
        f"({providers} available; CPU used), grpcio {grpc.__version__}, "
        f"numpy {np.__version__}, appliance {appliance.__version__}",
        f"- Closed loop: one grpc.aio channel in a separate process, {duration:g} s per "
        "point after 1 s of warm-up; single-row requests. In-process rows call "
        "`session.run` back to back (rows/s).",
        "",
        "| workload | server | concurrency | throughput (rows/s) | p50 (ms) | p99 (ms) | errors |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.workload} | {r.server} | {r.concurrency} | {r.throughput:,.0f} "
            f"| {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} |"
        )
    lines += [
        "",
        "## Targets",
        "",
        "| target | measured | threshold | met |",
        "|---|---:|---:|---|",
    ]
    for name, kind, value, threshold, met in checks(rows, memory):
        verdict = "yes" if met else "**no**"
        lines.append(f"| {name} | {value:.2f} | {kind} {threshold:g} | {verdict} |")
    missed = [(n, v, t) for n, kind, v, t, met in checks(rows, memory) if not met]
    if missed:
        lines += ["", "## Where a target is missed", ""]
        for name, value, threshold in missed:
            lines.append(
                f"- {name}: {value:.2f} against {threshold:g} "
                f"({abs(value - threshold) / threshold:.0%} short)."
            )
        lines += ["", WHY_MISSED.strip()]
    lines += [
        "",
        f"Daemon resident memory (RSS, after the load): default model "
        f"{memory['default']:.0f} MB, MiniLM int8 {memory['minilm']:.0f} MB.",
        "",
    ]
    return "\n".join(lines)


AB_CONCURRENCY = (1, 16)


def _default_request() -> bytes:
    x = np.random.default_rng(0).normal(10, 3, size=(1, 30)).astype(np.float32)
    return infer_request("breast_cancer", {"input": x})


@dataclass(frozen=True)
class Measured:
    load: LoadResult
    cpu_us: float  # server CPU (every thread) per request answered, warm-up included


def _measure(pid: int, address: str, request: bytes, concurrency: int, seconds: float) -> Measured:
    process = psutil.Process(pid)
    before = sum(process.cpu_times()[:2])
    load = run_load(address, request, concurrency, seconds, warmup=1.0)
    used = sum(process.cpu_times()[:2]) - before
    return Measured(load, used / max(load.sent, 1) * 1e6)


ABRow = dict[tuple[str, int], Measured]


def ab_rounds(other: Path, rounds: int, duration: float) -> list[ABRow]:
    """Bare servicer, the other checkout's daemon and this one's, interleaved."""
    request = _default_request()
    work = Path(tempfile.mkdtemp(prefix="serving-ab-"))
    results = []
    for index in range(rounds):
        order = ["bare", "before", "after"]
        if index % 2:
            order.reverse()
        row: ABRow = {}
        for who in order:
            if who == "bare":
                bare = BareServer(DEFAULT_MODEL)
                try:
                    for c in AB_CONCURRENCY:
                        pid = bare.process.pid
                        row[(who, c)] = _measure(pid, bare.address, request, c, duration)
                finally:
                    bare.stop()
                continue
            scratch = Path(tempfile.mkdtemp(dir=work))
            cwd = other if who == "before" else ROOT
            with DaemonProcess(scratch, {}, cwd=cwd) as daemon:
                assert daemon.process is not None
                for c in AB_CONCURRENCY:
                    pid = daemon.process.pid
                    row[(who, c)] = _measure(pid, daemon.address, request, c, duration)
        line = "  ".join(
            f"{w} c={c}: {row[(w, c)].load.throughput:.0f}/s p50 {row[(w, c)].load.p50_ms:.2f} "
            f"cpu {row[(w, c)].cpu_us:.0f}us"
            for w in ("bare", "before", "after")
            for c in AB_CONCURRENCY
        )
        print(f"  round {index + 1}: {line}", flush=True)
        results.append(row)
    return results


def ab_report(rounds: list[ABRow], other: Path) -> list[str]:
    lines = [
        "## Before and after, interleaved",
        "",
        f"The daemon of `{other.name}` (before) and of this checkout (after), with the bare "
        "servicer, one after the other in each round (order reversed every other round), "
        "default model, closed loop. CPU is the server process's (every thread) per request "
        "answered: less sensitive to the box's other load than throughput.",
        "",
        "| round | c=16 req/s: bare | before | after | c=1 p50 ms: bare | before | after "
        "| c=16 CPU us/req: bare | before | after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ratios: dict[str, list[float]] = collections.defaultdict(list)
    servers = ("bare", "before", "after")
    for i, row in enumerate(rounds, 1):
        cells = [str(i)]
        cells += [f"{row[(w, 16)].load.throughput:,.0f}" for w in servers]
        cells += [f"{row[(w, 1)].load.p50_ms:.2f}" for w in servers]
        cells += [f"{row[(w, 16)].cpu_us:.0f}" for w in servers]
        lines.append("| " + " | ".join(cells) + " |")
        for who in ("before", "after"):
            bare16, bare1, mine16, mine1 = (
                row[("bare", 16)],
                row[("bare", 1)],
                row[(who, 16)],
                row[(who, 1)],
            )
            ratios[f"{who}: c=16 throughput / bare"].append(
                mine16.load.throughput / bare16.load.throughput
            )
            ratios[f"{who}: c=1 p50 / bare"].append(mine1.load.p50_ms / bare1.load.p50_ms)
            ratios[f"{who}: c=16 CPU per request / bare"].append(mine16.cpu_us / bare16.cpu_us)
    lines += ["", "| ratio | median | min | max |", "|---|---:|---:|---:|"]
    for name in sorted(ratios):
        values = ratios[name]
        lines.append(
            f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |"
        )
    return lines


def profile(seconds: float = 8.0) -> list[str]:
    """Where this daemon's time goes at concurrency 16 (py-spy, Python frames)."""
    if shutil.which("py-spy") is None:
        return ["## Profile", "", "py-spy is not installed (`pip install py-spy`): no profile."]
    request = _default_request()
    raw = Path(tempfile.mkdtemp(prefix="serving-profile-")) / "stacks.txt"
    with DaemonProcess(Path(tempfile.mkdtemp(prefix="serving-profile-"))) as daemon:
        assert daemon.process is not None
        loaded: dict[str, LoadResult] = {}
        load = threading.Thread(
            target=lambda: loaded.update(r=run_load(daemon.address, request, 16, seconds + 6))
        )
        load.start()
        time.sleep(3.0)
        command = ["py-spy", "record", "-p", str(daemon.process.pid), "-d", f"{seconds:g}"]
        command += ["-r", "250", "--threads", "--format", "raw", "-o", str(raw)]
        subprocess.run(command, check=False, capture_output=True)
        load.join()
    return _profile_report(raw, loaded["r"], seconds)


def _profile_report(raw: Path, load: LoadResult, seconds: float) -> list[str]:
    threads: collections.Counter[str] = collections.Counter()
    main: collections.Counter[str] = collections.Counter()
    main_total = 0
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        thread = re.sub(r"thread \(\d+\): ", "", frames[0])
        threads[thread] += n
        total += n
        if thread != "MainThread":
            continue
        main_total += n
        seen = set()
        for frame in frames[1:]:
            name = re.sub(r" \((?:.*?/)?(appliance|asyncio|grpc)/(.*?):\d+\)", r" (\1/\2)", frame)
            ours = "appliance/" in name and not re.search(r"appliance/(cli/|__main__)", name)
            if (ours or "Handle._run" in name) and name not in seen:
                seen.add(name)
                main[name] += n
    lines = [
        "## Profile of the daemon under load",
        "",
        f"`py-spy record --threads --format raw` for {seconds:g} s of a concurrency-16 load on "
        f"the default model ({load.throughput:,.0f} req/s while sampled: the profiler costs "
        "some). Share of samples per thread, then, for the event-loop thread, the share of "
        "its samples inside each of our frames (inclusive; `Handle._run` is every callback "
        "the loop runs, gRPC's Cython included, whose own frames py-spy does not see).",
        "",
        "| thread | share of samples |",
        "|---|---:|",
    ]
    for thread, n in threads.most_common(6):
        lines.append(f"| {thread} | {n / total:.1%} |")
    lines += ["", "| event-loop frame | share of the loop's samples |", "|---|---:|"]
    for frame, n in main.most_common(20):
        lines.append(f"| `{frame}` | {n / main_total:.1%} |")
    return lines


# -- the HTTP port against gRPC (--http) -----------------------------------------------

HTTP_CONCURRENCY = (1, 16)
GRPC_PORT, HTTP_PORT = "daemon, gRPC", "daemon, V2 REST (binary)"
EMBEDDINGS = "daemon, /v1/embeddings (text)"
#: A clinical-style note: 36 tokens for MiniLM's tokenizer.
NOTE = (
    "Patient presents with intermittent chest pain radiating to the left arm, "
    "no history of diabetes; blood pressure 150/95, heart rate 88, ECG unremarkable."
)


def _row(workload: str, server: str, concurrency: int, result: LoadResult) -> Row:
    print(
        f"  {workload:10s} {server:32s} c={concurrency:<3d} {result.throughput:8.0f}/s "
        f"p50 {result.p50_ms:6.2f} ms p99 {result.p99_ms:6.2f} ms errors {result.errors}",
        flush=True,
    )
    return Row(
        workload,
        server,
        concurrency,
        result.throughput,
        result.p50_ms,
        result.p99_ms,
        result.errors,
    )


#: Slices each point is cut into, the two ports taking turns: a burst of other work on a
#: shared box then lands on both ports instead of on one of them.
SLICES = 4


def _combined(results: list[LoadResult]) -> LoadResult:
    """One point from its slices: throughput over the whole time, the median slice's p50,
    the worst slice's p99."""
    seconds = sum(r.seconds for r in results)
    requests = sum(r.requests for r in results)
    return LoadResult(
        concurrency=results[0].concurrency,
        seconds=seconds,
        requests=requests,
        errors=sum(r.errors for r in results),
        throughput=requests / seconds,
        p50_ms=float(np.median([r.p50_ms for r in results])),
        p99_ms=max(r.p99_ms for r in results),
        mean_ms=sum(r.mean_ms * r.requests for r in results) / max(requests, 1),
        first_error=next((r.first_error for r in results if r.first_error), ""),
    )


def port_rows(
    workload: str, daemon: DaemonProcess, grpc_request: bytes, rest_request: bytes, duration: float
) -> list[Row]:
    """Both ports of one daemon at each concurrency, taking turns in ``SLICES`` slices."""
    rows = []
    part = duration / SLICES
    for concurrency in HTTP_CONCURRENCY:
        grpc, rest = [], []
        for _ in range(SLICES):
            grpc.append(run_load(daemon.address, grpc_request, concurrency, part, warmup=0.5))
            rest.append(
                run_http_load(daemon.http_address, rest_request, concurrency, part, warmup=0.5)
            )
        rows.append(_row(workload, GRPC_PORT, concurrency, _combined(grpc)))
        rows.append(_row(workload, HTTP_PORT, concurrency, _combined(rest)))
    return rows


def minilm_folder_repository(work: Path) -> Path:
    """MiniLM int8 as a Triton-style embedding folder: the model and its tokenizer files."""
    from compress.minilm import minilm_folder

    _, int8 = minilm_onnx()
    folder = work / "minilm-repo" / "minilm" / "1"
    folder.mkdir(parents=True)
    (folder / "model.onnx").symlink_to(int8)
    source = minilm_folder()
    for name in ("tokenizer.json", "tokenizer_config.json", "sentence_bert_config.json"):
        (folder / name).symlink_to(source / name)
    return work / "minilm-repo"


def run_http(duration: float, out: Path, runs: int = 1) -> None:
    work = Path(tempfile.mkdtemp(prefix="serving-http-bench-"))
    repo = minilm_folder_repository(work)
    results = []
    for run_number in range(1, runs + 1):
        print(f"run {run_number} of {runs}", flush=True)
        results.append(http_run(work, repo, duration))
    out.write_text(http_report(results, duration))
    print(f"wrote {out}")


def http_run(work: Path, repo: Path, duration: float) -> list[Row]:
    import json

    rows: list[Row] = []
    print("default model: gRPC and V2 REST on one daemon", flush=True)
    x = np.random.default_rng(0).normal(10, 3, size=(1, 30)).astype(np.float32)
    with DaemonProcess(Path(tempfile.mkdtemp(dir=work))) as daemon:
        rows += port_rows(
            "default",
            daemon,
            infer_request("breast_cancer", {"input": x}),
            v2_infer_request("breast_cancer", {"input": x}),
            duration,
        )
    print("MiniLM-L6 int8: gRPC, V2 REST (128 tokens) and /v1/embeddings (one note)", flush=True)
    config: dict[str, Any] = {"repository": {"path": str(repo)}}
    one = token_batch(1)
    embeddings = http_request(
        "POST",
        "/v1/embeddings",
        json.dumps({"model": "minilm", "input": NOTE}).encode(),
        {"Content-Type": "application/json"},
    )
    with DaemonProcess(Path(tempfile.mkdtemp(dir=work)), config) as daemon:
        grpc_request, rest_request = infer_request("minilm", one), v2_infer_request("minilm", one)
        rows += port_rows("minilm", daemon, grpc_request, rest_request, duration)
        for concurrency in HTTP_CONCURRENCY:
            result = run_http_load(daemon.http_address, embeddings, concurrency, duration)
            rows.append(_row("minilm", EMBEDDINGS, concurrency, result))
    return rows


HTTP_NOTES = """
Reading the ratios: the target (V2 REST at least 0.7x gRPC on the default model at
concurrency 16) holds in every run. On MiniLM at concurrency 1 the REST rows come out at
0.6-0.7x, and that gap lies outside the daemon's request path. Its request log
(`logging.requests = "all"`) gives the same time inside the server for both ports (p50
99 ms over HTTP, 102 ms over gRPC, on this loaded box), and a synchronous raw-socket
client measured the REST port no slower than gRPC (p50 93-124 ms against 107-136 ms,
alternating). The likely cause is the client side of a 196 KB answer (MiniLM's hidden
states, 128 x 384 floats) in a pure-Python asyncio load generator on an oversubscribed
2-core box, against gRPC's C core; it was not pinned down further. At concurrency 16,
where the model is the bottleneck, the ports are within 0.8-1.0x of each other.
"""


def http_checks(rows: list[Row]) -> list[tuple[str, float, float, bool]]:
    """(target, measured ratio, threshold, met): the HTTP issue's target, and the others
    as figures beside it."""
    checks = []
    for workload in ("default", "minilm"):
        for concurrency in HTTP_CONCURRENCY:
            rest = _find(rows, workload, HTTP_PORT, concurrency).throughput
            grpc = _find(rows, workload, GRPC_PORT, concurrency).throughput
            ratio = rest / grpc
            target = 0.7 if (workload, concurrency) == ("default", 16) else 0.0
            name = f"{workload}, c={concurrency}: V2 REST throughput vs gRPC"
            checks.append((name, ratio, target, ratio >= target))
    return checks


def http_report(runs: list[list[Row]], duration: float) -> str:
    import aiohttp

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [
        "# Serving benchmark: the HTTP port beside gRPC",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by "
        f"`python benchmarks/serving.py --http --duration {duration:g} --runs {len(runs)}`.",
        "",
        f"- Machine: {os.cpu_count()} cores ({_cpu_name()}), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, no GPU; **shared with other "
        f"work** (load average at the end {load}: absolute figures are the box's, the "
        "ratios of the two ports, measured back to back, are what to read)",
        f"- Python {platform.python_version()}, onnxruntime {ort.__version__}, "
        f"aiohttp {aiohttp.__version__}",
        f"- One daemon per workload serving both ports (batching on); closed loop from a "
        f"separate process, {duration:g} s per point cut into {SLICES} slices (0.5 s of "
        "warm-up each) in which the two ports take turns; a point's p50 is its median "
        "slice's, its p99 its worst slice's. gRPC: `grpc.aio`, the request serialised once "
        "(`_load`). V2 REST: keep-alive HTTP/1.1 connections, one per worker, the request "
        "as `tritonclient.http` sends it (JSON header plus binary tensor data) built once "
        "(`_http_load`). `/v1/embeddings`: one clinical-style note per request (36 "
        "tokens), tokenized and pooled on the box.",
        "",
        "## Ratios (V2 REST throughput / gRPC throughput, same daemon)",
        "",
        "| comparison | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " | target |",
        "|---|" + "---:|" * len(runs) + "---|",
    ]
    checks = [http_checks(rows) for rows in runs]
    for index, (name, _, target, _) in enumerate(checks[0]):
        ratios = " | ".join(
            f"{c[index][1]:.2f}" + ("" if c[index][3] else " **(missed)**") for c in checks
        )
        lines.append(f"| {name} | {ratios} | {f'at least {target:g}' if target else '-'} |")
    lines += ["", HTTP_NOTES.strip()]
    for number, rows in enumerate(runs, 1):
        lines += [
            "",
            f"## Run {number}",
            "",
            "| workload | server | concurrency | throughput (req/s) | p50 (ms) | p99 (ms) "
            "| errors |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r.workload} | {r.server} | {r.concurrency} | {r.throughput:,.0f} "
                f"| {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--out", type=Path, help="results file (default: results/serving.md)")
    parser.add_argument("--http", action="store_true", help="the HTTP port against gRPC")
    parser.add_argument("--runs", type=int, default=1, help="--http: repeat the comparison")
    parser.add_argument("--compare-with", type=Path, help="another checkout: before/after")
    parser.add_argument("--rounds", type=int, default=5, help="before/after rounds")
    parser.add_argument("--skip-full", action="store_true", help="only the before/after part")
    args = parser.parse_args()
    if args.http:
        run_http(args.duration, args.out or HERE / "results" / "serving-http.md", args.runs)
        return
    out = args.out or HERE / "results" / "serving.md"
    if not args.skip_full:
        run(args.duration, out)
    if args.compare_with is not None:
        print("before/after, interleaved", flush=True)
        rounds = ab_rounds(args.compare_with.resolve(), args.rounds, args.duration)
        extra = ["", *ab_report(rounds, args.compare_with), "", *profile(), ""]
        previous = out.read_text() if out.exists() and not args.skip_full else ""
        out.write_text(previous + "\n".join(extra))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
