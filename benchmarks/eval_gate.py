"""Benchmark: what the site evaluation gate costs an activation, and live traffic meanwhile.

The embedded breast-cancer classifier is packaged twice (versions 1 and 2, labels
``malignant``/``benign``); the site's evaluation data is 10,000 rows drawn from the
Wisconsin diagnostic set (with replacement, each feature jittered by 1% of its spread)
with a ``group`` column of four made-up wards. Two daemons on loopback:

1. without ``eval_data``: push v1 active, push v2, time ``activate 2`` (self-test and
   switch only);
2. with ``eval_data`` (accuracy, budget 0.02): the same, so the activation also scores
   both versions on the 10,000 rows (overall and per ward); then under a closed loop of
   16 concurrent clients (update.py's load worker, its own process): a steady run, and a
   run during which ``models evaluate`` is called back to back, so the evaluation thread
   is busy the whole window. p99 of the requests that started while evaluations ran
   against steady state (target at most 1.5x).

Writes ``benchmarks/results/eval-gate.md``. Run: ``python benchmarks/eval_gate.py``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _load import infer_request  # noqa: E402
from update import CONCURRENCY, Figures, figures, machine, run_load  # noqa: E402

RESULTS = HERE / "results" / "eval-gate.md"
NAME = "breast_cancer"
LABELS = ("malignant", "benign")
ROWS = 10_000
WARDS = ("oncology", "surgery", "radiology", "outpatient")


def write_eval_data(path: Path, rows: int = ROWS) -> Path:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(data.target), size=rows)
    x = data.data[pick] + rng.standard_normal((rows, 30)) * data.data.std(axis=0) * 0.01
    wards = rng.integers(0, len(WARDS), size=rows)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([*(f"f{i}" for i in range(30)), "label", "group"])
        for features, target, ward in zip(x, data.target[pick], wards, strict=True):
            writer.writerow([*(f"{v:.6g}" for v in features), LABELS[target], WARDS[ward]])
    return path


def build_packages(key: Path, out: Path) -> list[Path]:
    from appliance.package import Manifest, build_package, make_golden, specs_from_onnx
    from appliance.repository import EMBEDDED_ROOT

    onnx = EMBEDDED_ROOT / NAME / "1" / "model.onnx"
    inputs, outputs = specs_from_onnx(onnx)
    golden = make_golden(onnx)
    return [
        build_package(
            onnx,
            Manifest(
                name=NAME,
                version=v,
                inputs=inputs,
                outputs=outputs,
                golden=golden,
                labels=LABELS,
            ),
            key,
            out / f"{NAME}-{v}.apkg",
        )
        for v in (1, 2)
    ]


def activation_s(work: Path, packages: list[Path], model: dict[str, Any]) -> float:
    """Seconds of ``activate 2`` on a fresh daemon with ``[models.breast_cancer] model``."""
    from appliance.admin import AdminClient, AdminTarget
    from tests._daemon import DaemonProcess

    config = _config(work, model)
    with DaemonProcess(work, config), AdminClient(AdminTarget(str(work / "admin.sock"))) as c:
        c.push(packages[0], activate=True)
        c.push(packages[1])
        if "eval_data" in model:  # a changed file is parsed again: the worst case
            Path(model["eval_data"]).touch()
        start = time.monotonic()
        c.activate(NAME, 2)
        return time.monotonic() - start


def _config(work: Path, model: dict[str, Any]) -> dict[str, Any]:
    return {
        "signing": {"trusted_keys": [str(work.parent / "keys" / "public.pem")]},
        "lifecycle": {"audit_log": str(work / "audit.jsonl")},
        "repository": {"serve_default_model": False},
        "models": {NAME: model},
    }


def under_load(
    work: Path, packages: list[Path], model: dict[str, Any], seconds: float, rounds: int
) -> list[dict[str, Any]]:
    """Rounds of steady p99, then p99 while evaluations run back to back, on one daemon
    (alternating, so a neighbour's load on the shared box hits both sides alike)."""
    from appliance.admin import AdminClient, AdminTarget
    from tests._daemon import DaemonProcess

    x = np.random.default_rng(1).standard_normal((1, 30)).astype(np.float32)
    request = infer_request(NAME, {"input": x})
    target = AdminTarget(str(work / "admin.sock"))
    with DaemonProcess(work, _config(work, model)) as daemon, AdminClient(target) as client:
        client.push(packages[0], activate=True)
        client.push(packages[1])
        return [_round(daemon.address, client, request, seconds) for _ in range(rounds)]


def _round(address: str, client: Any, request: bytes, seconds: float) -> dict[str, Any]:
    steady_records = run_load(address, request, seconds)
    t_first = steady_records[0][0] + 1.0  # skip connecting and warm-up
    steady = figures(steady_records, t_first, max(r[0] for r in steady_records))
    records: list[tuple[float, float, bool]] = []
    loader = threading.Thread(
        target=lambda: records.extend(run_load(address, request, seconds + 2.0))
    )
    loader.start()
    time.sleep(1.5)
    t0 = time.monotonic()
    evaluations = 0
    while time.monotonic() - t0 < seconds - 1.0:
        client.evaluate(NAME, 2)
        evaluations += 1
    t1 = time.monotonic()
    loader.join()
    return {
        "steady": steady,
        "during": figures(records, t0, t1),
        "evaluations": evaluations,
        "evaluation_s": (t1 - t0) / max(evaluations, 1),
        "failed": sum(not r[2] for r in records) + steady.failed,
    }


def _ratio(load: dict[str, Any]) -> float:
    steady: Figures = load["steady"]
    during: Figures = load["during"]
    return during.p99_ms / steady.p99_ms if steady.p99_ms else float("nan")


def _rows(loads: list[dict[str, Any]]) -> list[str]:
    lines = []
    for i, load in enumerate(loads, 1):
        for label, f in (("steady", load["steady"]), ("during evaluation", load["during"])):
            lines.append(
                f"| {i} | {label} | {f.requests} | {f.p50_ms:.2f} | {f.p99_ms:.2f} | "
                f"{f.throughput:.0f} |"
            )
        lines.append(
            f"| {i} | p99 ratio | | | **{_ratio(load):.2f}x** | "
            f"{load['evaluations']} evaluations of {load['evaluation_s']:.2f} s |"
        )
    return lines


def report_text(gated: float, plain: float, loads: list[dict[str, Any]], seconds: float) -> str:
    ratios = [_ratio(load) for load in loads]
    return "\n".join(
        [
            "# Site evaluation gate: activation time and live latency during evaluation",
            "",
            f"Machine: {machine()}. Shared with other work while measured: figures are "
            "noisy, compare within one run.",
            "",
            "Command: `python benchmarks/eval_gate.py` (this file was written by it).",
            "",
            f"Model: the embedded breast-cancer classifier (30 features), evaluation data "
            f"{ROWS:,} rows in 4 groups (CSV), metric accuracy, scored for the candidate "
            "and the serving version, overall and per group, by one evaluation thread at "
            "nice 19 with ONNX Runtime sessions of 1 intra-op thread, 256 rows per run.",
            "",
            "| activation (`models activate 2`) | seconds |",
            "|---|---|",
            f"| without `eval_data` (self-test, switch) | {plain:.2f} |",
            f"| with `eval_data` of {ROWS:,} rows, file changed since the last read (parse, "
            f"self-test, gate on both versions, switch) | {gated:.2f} |",
            f"| the gate's share | {gated - plain:.2f} |",
            "",
            f"Live traffic: closed loop of {CONCURRENCY} concurrent clients (grpc.aio, own "
            f"process), one row per request, {seconds:.0f} s per run. *During evaluation*: "
            "requests that started while `models evaluate breast_cancer 2` ran back to back "
            "(both versions scored each time, the parsed data reused), so the evaluation "
            "thread is busy for the whole window. Steady and evaluation runs alternate. "
            "Target: p99 during evaluation at most 1.5x steady.",
            "",
            "| round | run | requests | p50 ms | p99 ms | req/s |",
            "|---|---|---|---|---|---|",
            *_rows(loads),
            "",
            f"Median p99 ratio: **{float(np.median(ratios)):.2f}x**; failed requests: "
            f"{sum(load['failed'] for load in loads)}.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=3, help="steady/evaluation pairs")
    args = parser.parse_args()
    from appliance.package import generate_keypair

    with tempfile.TemporaryDirectory(prefix="eval-gate-bench-") as tmp:
        root = Path(tmp)
        private, _ = generate_keypair(root / "keys")
        packages = build_packages(private, root)
        data = write_eval_data(root / "site-eval.csv")
        gate = {"eval_data": str(data), "eval_metric": "accuracy", "eval_max_drop": 0.02}
        runs = {}
        for label, model in (("plain", {}), ("gated", gate)):
            (root / label).mkdir()
            runs[label] = activation_s(root / label, packages, model)
        (root / "load").mkdir()
        loads = under_load(root / "load", packages, gate, args.seconds, args.rounds)
    text = report_text(runs["gated"], runs["plain"], loads, args.seconds)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
