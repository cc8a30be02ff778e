"""Benchmark: how long a model update takes, and what it costs the requests in flight.

For the embedded breast-cancer model and MiniLM-L6 int8 (dynamic, per channel), it
starts the real daemon on loopback, pushes a signed version 1 and activates it, then:

1. steady state: a closed loop of 16 concurrent clients (in a child process, grpc.aio)
   for ``--steady`` seconds: p50/p99 latency and throughput;
2. swap: the same load runs while version 2 is pushed with ``--activate`` (upload,
   signature check, unpack, new session, golden self-test, install, switch, drain the
   old); p50/p99 of the requests that started during the push, and failures over the
   whole run (target: none; p99 during the swap at most 2x steady state).

Writes ``benchmarks/results/update.md``. Run: ``python benchmarks/update.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _load import METHOD, infer_request  # noqa: E402

CONCURRENCY = 16
RESULTS = HERE / "results" / "update.md"


# -- load worker (child process) ----------------------------------------------------


async def _worker_loop(job: dict[str, Any]) -> list[tuple[float, float, bool]]:
    import grpc

    request = bytes.fromhex(job["request"])
    records: list[tuple[float, float, bool]] = []
    options = [("grpc.max_receive_message_length", 2**31 - 1)]
    async with grpc.aio.insecure_channel(job["target"], options=options) as channel:
        call = channel.unary_unary(METHOD)
        end = time.monotonic() + job["duration"]

        async def one() -> None:
            while time.monotonic() < end:
                start = time.monotonic()
                try:
                    await call(request, timeout=30)
                    ok = True
                except grpc.RpcError:
                    ok = False
                records.append((start, time.monotonic() - start, ok))

        await asyncio.gather(*(one() for _ in range(job["concurrency"])))
    return records


def _worker_main() -> None:
    job = json.loads(sys.stdin.read())
    records = asyncio.run(_worker_loop(job))
    json.dump(records, sys.stdout)


def run_load(target: str, request: bytes, duration: float) -> list[tuple[float, float, bool]]:
    job = {
        "target": target,
        "request": request.hex(),
        "duration": duration,
        "concurrency": CONCURRENCY,
    }
    done = subprocess.run(
        [sys.executable, __file__, "--load-worker"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 120,
    )
    return [tuple(r) for r in json.loads(done.stdout)]  # type: ignore[misc]


# -- measurement --------------------------------------------------------------------


@dataclass
class Figures:
    requests: int
    failed: int
    p50_ms: float
    p99_ms: float
    throughput: float


def figures(records: list[tuple[float, float, bool]], t0: float, t1: float) -> Figures:
    window = [r for r in records if t0 <= r[0] <= t1]
    latencies = np.array([r[1] for r in window if r[2]]) * 1000.0
    if latencies.size == 0:
        return Figures(len(window), sum(not r[2] for r in window), 0.0, 0.0, 0.0)
    return Figures(
        requests=len(window),
        failed=sum(not r[2] for r in window),
        p50_ms=float(np.percentile(latencies, 50)),
        p99_ms=float(np.percentile(latencies, 99)),
        throughput=len(latencies) / max(t1 - t0, 1e-9),
    )


@dataclass
class Case:
    label: str
    name: str
    onnx: Path
    request: bytes
    rtol: float
    atol: float


def build_packages(case: Case, key: Path, out: Path) -> list[Path]:
    from appliance.package import Manifest, build_package, make_golden, specs_from_onnx

    inputs, outputs = specs_from_onnx(case.onnx)
    golden = make_golden(case.onnx, rtol=case.rtol, atol=case.atol)
    return [
        build_package(
            case.onnx,
            Manifest(name=case.name, version=v, inputs=inputs, outputs=outputs, golden=golden),
            key,
            out / f"{case.name}-{v}.apkg",
        )
        for v in (1, 2)
    ]


def measure(case: Case, work: Path, steady_s: float) -> dict[str, Any]:
    from appliance.admin import AdminClient, AdminTarget
    from appliance.package import generate_keypair
    from tests._daemon import DaemonProcess

    private, public = generate_keypair(work / "keys")
    v1, v2 = build_packages(case, private, work)
    config = {
        "signing": {"trusted_keys": [str(public)]},
        "lifecycle": {"audit_log": str(work / "audit.jsonl")},
        "repository": {"serve_default_model": False},
    }
    with DaemonProcess(work, config) as daemon:
        target = AdminTarget(str(work / "admin.sock"))
        with AdminClient(target) as client:
            client.push(v1, activate=True)
        steady_records = run_load(daemon.address, case.request, steady_s)
        t_first = steady_records[0][0] + 1.0  # skip the first second (connections, warm-up)
        steady = figures(steady_records, t_first, max(r[0] for r in steady_records))

        swap_records: list[tuple[float, float, bool]] = []
        loader = threading.Thread(
            target=lambda: swap_records.extend(run_load(daemon.address, case.request, steady_s))
        )
        loader.start()
        time.sleep(2.0)
        t0 = time.monotonic()
        with AdminClient(target) as client:
            answer = client.push(v2, activate=True)
        t1 = time.monotonic()
        loader.join()
    during = figures(swap_records, t0, t1)
    whole = figures(swap_records, min(r[0] for r in swap_records), t1 + 60)
    return {
        "label": case.label,
        "package_mb": v2.stat().st_size / 1e6,
        "push_activate_s": t1 - t0,
        "server_s": answer.seconds,
        "steady": steady,
        "during": during,
        "failed_total": whole.failed,
        "requests_total": whole.requests,
    }


def cases() -> list[Case]:
    from _minilm import minilm_onnx, token_batch

    from appliance.repository import EMBEDDED_ROOT

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 30)).astype(np.float32)
    default = EMBEDDED_ROOT / "breast_cancer" / "1" / "model.onnx"
    _, int8 = minilm_onnx()
    return [
        Case(
            "default model (breast cancer MLP), batch 1",
            "breast_cancer",
            default,
            infer_request("breast_cancer", {"input": x}),
            1e-3,
            1e-3,
        ),
        Case(
            "MiniLM-L6 int8 (per channel), batch 1 x 128 tokens",
            "minilm",
            int8,
            infer_request("minilm", token_batch(rows=1, length=128)),
            1e-2,
            1e-2,
        ),
    ]


def machine() -> str:
    import grpc
    import onnxruntime

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, onnxruntime {onnxruntime.__version__}, "
        f"grpcio {grpc.__version__}"
    )


def report(results: list[dict[str, Any]], steady_s: float) -> str:
    lines = [
        "# Model update: push + activation time, latency during the swap",
        "",
        f"Machine: {machine()}.",
        "",
        f"Closed loop of {CONCURRENCY} concurrent clients (grpc.aio, own process) on loopback, "
        f"{steady_s:.0f} s per run. *Push + activate* is the wall time of "
        "`AdminClient.push(..., activate=True)`: upload over the admin socket, signature "
        "and manifest check, unpack, new ONNX Runtime session, golden self-test, install, "
        "atomic switch, drain and unload of the old version. *During swap* counts the "
        "requests that started while that call ran. Target: zero failed requests, p99 "
        "during the swap at most 2x steady state.",
        "",
        "| model | package MB | push + activate s | of which server s | steady p50 / p99 ms "
        "| steady req/s | swap p50 / p99 ms | p99 ratio | requests during swap | failed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s, d = r["steady"], r["during"]
        ratio = d.p99_ms / s.p99_ms if s.p99_ms else float("nan")
        lines.append(
            f"| {r['label']} | {r['package_mb']:.2f} | {r['push_activate_s']:.2f} | "
            f"{r['server_s']:.2f} | {s.p50_ms:.2f} / {s.p99_ms:.2f} | {s.throughput:.0f} | "
            f"{d.p50_ms:.2f} / {d.p99_ms:.2f} | {ratio:.2f}x | {d.requests} | "
            f"{r['failed_total']} of {r['requests_total']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steady", type=float, default=8.0, help="seconds per load run")
    parser.add_argument("--load-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_worker:
        _worker_main()
        return
    results = []
    for case in cases():
        with tempfile.TemporaryDirectory(prefix="update-bench-") as tmp:
            results.append(measure(case, Path(tmp), args.steady))
            print(results[-1], file=sys.stderr)
    text = report(results, args.steady)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
