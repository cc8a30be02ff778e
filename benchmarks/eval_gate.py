"""Benchmark: what the site evaluation gate costs an activation, and live traffic meanwhile.

The embedded breast-cancer classifier is packaged twice (versions 1 and 2, labels
``malignant``/``benign``); the site's evaluation data is 10,000 rows drawn from the
Wisconsin diagnostic set (with replacement, each feature jittered by 1% of its spread)
with a ``group`` column of four made-up wards.

1. Activation time, no load: ``activate 2`` on a daemon without ``eval_data`` and on
   one with it (accuracy, budget 0.02), the data file changed just before (so the gate
   parses it, then scores both versions overall and per ward).
2. Live traffic, a closed loop of 16 concurrent clients (update.py's load worker, its
   own process), on each daemon in turn, per round: a steady run; a run during which
   activations alternate between versions 2 and 1; on the gated daemon also a run
   during which ``models evaluate`` is called back to back (the evaluation thread busy
   all the time). p99 of the requests that started in each window against the same
   daemon's steady runs (target at most 1.5x).

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
    """Rounds of steady p99, p99 during activations and (with the gate) during
    evaluations back to back, on one daemon; the runs of a round follow each other so a
    neighbour's load on the shared box hits them alike."""
    from appliance.admin import AdminClient, AdminTarget
    from tests._daemon import DaemonProcess

    x = np.random.default_rng(1).standard_normal((1, 30)).astype(np.float32)
    request = infer_request(NAME, {"input": x})
    target = AdminTarget(str(work / "admin.sock"))
    with DaemonProcess(work, _config(work, model)) as daemon, AdminClient(target) as client:
        client.push(packages[0], activate=True)
        client.push(packages[1])
        return [_round(daemon.address, client, request, seconds, model) for _ in range(rounds)]


def _round(
    address: str, client: Any, request: bytes, seconds: float, model: dict[str, Any]
) -> dict[str, Any]:
    """Steady, then (gated daemon only) evaluations back to back, then activations."""
    steady_records = run_load(address, request, seconds)
    t_first = steady_records[0][0] + 1.0  # skip connecting and warm-up
    steady = figures(steady_records, t_first, max(r[0] for r in steady_records))
    activations, windows = _during_activations(address, client, request, seconds)
    result = {"steady": steady, "activations": activations, "windows": windows}
    if "eval_data" in model:
        result.update(_back_to_back(address, client, request, seconds))
    return result


def _back_to_back(address: str, client: Any, request: bytes, seconds: float) -> dict[str, Any]:
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
        "during": figures(records, t0, t1),
        "evaluations": evaluations,
        "evaluation_s": (t1 - t0) / max(evaluations, 1),
    }


def _during_activations(
    address: str, client: Any, request: bytes, seconds: float
) -> tuple[Figures, int]:
    """Load while activations alternate (2, then 1 again): the requests that started
    while one ran."""
    records: list[tuple[float, float, bool]] = []
    loader = threading.Thread(
        target=lambda: records.extend(run_load(address, request, seconds + 2.0))
    )
    loader.start()
    time.sleep(1.5)
    windows: list[tuple[float, float]] = []
    end = time.monotonic() + seconds - 1.0
    version = 2
    while time.monotonic() < end:
        start = time.monotonic()
        client.activate(NAME, version, allow_downgrade=True)
        windows.append((start, time.monotonic()))
        version = 3 - version
        time.sleep(0.3)  # steady traffic between activations
    loader.join()
    inside = [r for r in records if any(a <= r[0] <= b for a, b in windows)]
    return figures(inside, windows[0][0], windows[-1][1]), len(windows)


def _ratio(load: dict[str, Any], run: str = "during") -> float:
    steady: Figures = load["steady"]
    during: Figures = load[run]
    return during.p99_ms / steady.p99_ms if steady.p99_ms else float("nan")


def _rows(label: str, loads: list[dict[str, Any]]) -> list[str]:
    lines = []
    for i, load in enumerate(loads, 1):
        runs = [("steady", load["steady"]), ("during activations", load["activations"])]
        if "during" in load:
            runs.append(("during evaluations back to back", load["during"]))
        for run, f in runs:
            rate = f"{f.throughput:.0f}" if run != "during activations" else "-"
            lines.append(
                f"| {label} | {i} | {run} | {f.requests} | {f.p50_ms:.2f} | {f.p99_ms:.2f} | "
                f"{rate} | {f.failed} |"
            )
    return lines


def _median(loads: list[dict[str, Any]], run: str) -> float:
    return float(np.median([_ratio(load, run) for load in loads]))


def report_text(
    gated: float,
    plain: float,
    loads: dict[str, list[dict[str, Any]]],
    seconds: float,
) -> str:
    with_gate, without = loads["gated"], loads["plain"]
    evaluations = sum(load["evaluations"] for load in with_gate)
    evaluation_s = float(np.mean([load["evaluation_s"] for load in with_gate]))
    return "\n".join(
        [
            "# Site evaluation gate: activation time and live latency during evaluation",
            "",
            f"Machine: {machine()}. Shared with other work while measured (load average "
            "well above the core count): figures are noisy, compare within one run.",
            "",
            "Command: `python benchmarks/eval_gate.py` (this file was written by it).",
            "",
            f"Model: the embedded breast-cancer classifier (30 features), evaluation data "
            f"{ROWS:,} rows in 4 groups (CSV), metric accuracy, scored for the candidate "
            "and the serving version, overall and per group, by one evaluation thread at "
            "nice 19 with ONNX Runtime sessions of 1 intra-op thread, 1,024 rows per run.",
            "",
            "| activation (`models activate 2`, no load) | seconds |",
            "|---|---|",
            f"| without `eval_data` (verify, self-test, switch) | {plain:.2f} |",
            f"| with `eval_data` of {ROWS:,} rows, file changed since the last read (parse, "
            f"verify, self-test, gate on both versions, switch) | {gated:.2f} |",
            f"| the gate's share, parse included | {gated - plain:.2f} |",
            "",
            f"Live traffic: closed loop of {CONCURRENCY} concurrent clients (grpc.aio, own "
            f"process), one row per request, {seconds:.0f} s per run, on two daemons in turn: "
            "one without `eval_data`, one with it. *During activations*: requests that "
            "started while `models activate` ran, alternating versions 2 and 1 with 0.3 s of "
            "plain traffic between them (on the gated daemon each activation scores both "
            "versions; the parsed file is reused, as on a box whose data did not change). "
            "*During evaluations back to back*: requests that started while `models evaluate "
            "breast_cancer 2` ran without pause, the evaluation thread busy for the whole "
            "window (the worst case). Within each round the runs follow each other. "
            "Target: p99 during evaluation at most 1.5x steady.",
            "",
            "| daemon | round | run | requests | p50 ms | p99 ms | req/s | failed |",
            "|---|---|---|---|---|---|---|---|",
            *_rows("no gate", without),
            *_rows("gate", with_gate),
            "",
            "Median p99 ratios against the same daemon's steady runs:",
            "",
            f"- activations without the gate: **{_median(without, 'activations'):.2f}x**",
            f"- activations with the gate: **{_median(with_gate, 'activations'):.2f}x**",
            f"- evaluations back to back: **{_median(with_gate, 'during'):.2f}x** "
            f"({evaluations} evaluations, {evaluation_s:.2f} s each on average)",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per daemon")
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
        loads = {}
        for label, model in (("plain", {}), ("gated", gate)):
            (root / f"load-{label}").mkdir()
            work = root / f"load-{label}"
            loads[label] = under_load(work, packages, model, args.seconds, args.rounds)
    text = report_text(runs["gated"], runs["plain"], loads, args.seconds)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
