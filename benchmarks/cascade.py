"""Cascade benchmark: a small model answering when confident, its teacher otherwise.

Two pairs, each served by the real daemon as ``[cascades.cascade] stages = ["small",
"large"]`` with the threshold ``compress.cascade.calibrate`` chose on a calibration
split (budget: accuracy at most ``--max-drop`` below the large model), then measured on
a held-out split:

- **breast cancer** (overhead-bound): the embedded default model (a logistic regression)
  as the small stage, an MLP teacher (``compress.models.TabularMLP``, 256-128 hidden,
  trained here on the same training split) as the large one; 30 features per request.
- **MiniLM-L6** (compute-bound, what the 1.5x target is about): a classifier head
  (logistic regression on the mask-aware mean of the last hidden state, L2-normalised)
  trained on the fp32 teacher's embeddings of clinical-style sentences of two classes
  (cardiac or respiratory complaints; a tenth of the sentences mention both), appended to
  the fp32 export (large) and to its dynamic int8 per-channel quantization (small: the
  compressed student), the same head on both. Single-row requests of 128 tokens.

For each pair: the share of rows answered by the small model, the accuracy of the
cascade and of the large model alone on the held-out rows (answers from the daemon),
and closed-loop throughput and p99 latency of the cascade against the large model alone
(gRPC, one request per row in turn, side by side in one run, the order alternated over
``--rounds``). Writes ``benchmarks/results/cascade.md``.

    python benchmarks/cascade.py [--duration SECONDS] [--rounds N] [--concurrency N]
        [--max-drop F] [--skip-minilm] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from _load import LoadResult, infer_request, run_load  # noqa: E402
from _minilm import WORK as MINILM_WORK  # noqa: E402
from _minilm import minilm_onnx  # noqa: E402

from appliance.repository import EMBEDDED_ROOT  # noqa: E402
from compress.cascade import Calibration, calibrate  # noqa: E402
from tests._daemon import DaemonProcess  # noqa: E402

RESULTS = HERE / "results" / "cascade.md"
#: What bounds the figures, written under them (checked against the run it came with).
READING = """## Reading

- The throughput a cascade can reach is bounded by the small stage: every request runs
  it, and an unsure one runs the large stage after it. With a student at about 2x its
  teacher's speed (MiniLM int8 against fp32), a share s answered by the small model costs
  about 0.5 + (1 - s) of the teacher per request: 1.5x needs s of about 0.83 or more on an
  idle box. A lighter student (the distilled 3-layer MiniLM of `compress_minilm.py`)
  leaves more room.
- On the breast-cancer pair both models take microseconds: the request path, not the
  models, sets the throughput, and a cascade cannot be faster there.
"""
DEFAULT_MODEL = EMBEDDED_ROOT / "breast_cancer" / "1" / "model.onnx"
SEED = 0
Feeds = dict[str, np.ndarray]


@dataclass
class Pair:
    name: str
    small: Path  # ONNX files, output "probabilities"
    large: Path
    calibration: tuple[list[Feeds], np.ndarray]  # one feed dict per row, labels
    evaluation: tuple[list[Feeds], np.ndarray]
    note: str


@dataclass
class CascadeRun:
    """One ``[cascades.NAME]`` of a pair: its threshold and what it did."""

    name: str  # "cascade": the budget's threshold; "strict": no disagreement allowed
    calibration: Calibration
    small_share: float  # held-out rows answered by the small model
    accuracy: float
    results: list[LoadResult]

    @property
    def threshold(self) -> float:
        assert self.calibration.chosen is not None
        return self.calibration.chosen.threshold


@dataclass
class Measured:
    pair: str
    large_accuracy: float
    small_accuracy: float
    large: list[LoadResult]
    cascades: list[CascadeRun]


# -- breast cancer -------------------------------------------------------------------


def tabular_pair(work: Path) -> Pair:
    """The default model's own split (``appliance.default_model.build``: 25% held out)."""
    import torch
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    from compress.models import TabularMLP

    data = load_breast_cancer()
    x, y = data.data.astype(np.float32), data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    torch.manual_seed(SEED)
    mlp = TabularMLP(30, 2, hidden=(256, 128))
    mlp.set_standardization(torch.from_numpy(x_tr.mean(0)), torch.from_numpy(x_tr.std(0)))
    opt = torch.optim.Adam(mlp.parameters(), lr=3e-3)
    inputs, labels = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    for _ in range(80):
        for idx in torch.split(torch.randperm(len(inputs)), 64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(mlp(inputs[idx]), labels[idx]).backward()
            opt.step()
    mlp.eval()
    large = mlp_onnx(mlp, work / "bc-large.onnx")
    small = work / "bc-small.onnx"
    shutil.copy(DEFAULT_MODEL, small)
    # The held-out rows, halved: calibration, then evaluation.
    half = len(x_te) // 2
    rows = [{"input": r[None]} for r in x_te]
    return Pair(
        "breast cancer",
        small,
        large,
        (rows[:half], y_te[:half]),
        (rows[half:], y_te[half:]),
        "small: the embedded logistic regression; large: an MLP (30-256-128-2) teacher; "
        f"{half} held-out rows to calibrate, {len(rows) - half} to evaluate",
    )


def mlp_onnx(mlp: Any, path: Path) -> Path:
    """The trained MLP as a hand-built graph: input (batch, 30) -> probabilities."""
    layers = [m for m in mlp.net if hasattr(m, "weight")]
    inits = [
        numpy_helper.from_array(mlp.mean.numpy(), "mean"),
        numpy_helper.from_array(mlp.std.numpy(), "std"),
    ]
    nodes = [
        helper.make_node("Sub", ["input", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["h0"]),
    ]
    for i, layer in enumerate(layers):
        w = layer.weight.detach().numpy().T.copy()
        b = layer.bias.detach().numpy().copy()
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [
            helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"m{i}"]),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
        ]
        last = i == len(layers) - 1
        nodes.append(
            helper.make_node("Softmax", [f"a{i}"], ["probabilities"], axis=-1)
            if last
            else helper.make_node("Relu", [f"a{i}"], [f"h{i + 1}"])
        )
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 30])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, path)
    return path


# -- MiniLM --------------------------------------------------------------------------

_CARDIAC = [
    "chest pain radiating to the left arm",
    "palpitations at rest",
    "crushing chest pressure",
    "an irregular heartbeat",
    "swelling of both ankles",
    "fainting after exertion",
    "tightness in the chest when climbing stairs",
    "a racing heart at night",
]
_RESPIRATORY = [
    "a productive cough",
    "wheezing at night",
    "shortness of breath when lying flat",
    "coughing up blood",
    "a persistent dry cough",
    "noisy breathing",
    "sputum with a green colour",
    "breathlessness after a cold",
]
_FRAMES = [
    "{age}-year-old {sex} presenting with {a} for {d}.",
    "Patient reports {a} since {d}; seen in clinic today.",
    "Referred by the GP because of {a} lasting {d}.",
    "Admitted overnight with {a}, first noticed {d} ago.",
    "{sex} aged {age}, complains of {a}; no other history.",
]
_MIXED = "{age}-year-old {sex} with {a} and also {b} for {d}."
_DURATIONS = ["two days", "a week", "three weeks", "a month", "several hours", "ten days"]


def sentences(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """(texts, labels): 0 cardiac, 1 respiratory; one in ten mentions both (label: the first)."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.randrange(2)
        own, other = (_CARDIAC, _RESPIRATORY) if label == 0 else (_RESPIRATORY, _CARDIAC)
        fields = {
            "age": rng.randrange(18, 95),
            "sex": rng.choice(["man", "woman", "Male", "Female"]),
            "d": rng.choice(_DURATIONS),
            "a": rng.choice(own),
            "b": rng.choice(other),
        }
        frame = _MIXED if rng.random() < 0.1 else rng.choice(_FRAMES)
        text = frame.format(**fields)
        texts.append(text[0].upper() + text[1:])
        labels.append(label)
    return texts, np.array(labels)


def minilm_pair(work: Path) -> Pair:
    from sklearn.linear_model import LogisticRegression

    from compress.minilm import load_minilm

    fp32, int8 = minilm_onnx()
    _, tokenizer = load_minilm()

    def tokens(texts: list[str]) -> Feeds:
        encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=128)
        return {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()}

    # Built once into benchmarks/.work/minilm/ (deterministic: fixed seeds).
    large, small = MINILM_WORK / "cascade-large.onnx", MINILM_WORK / "cascade-small.onnx"
    if not (large.exists() and small.exists()):
        train_x, train_y = sentences(800, seed=1)
        encoder = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
        embeddings = np.concatenate(
            [pooled(encoder, tokens(train_x[i : i + 32])) for i in range(0, len(train_x), 32)]
        )
        head = LogisticRegression(C=10.0, max_iter=2000).fit(embeddings, train_y)
        with_head(fp32, head.coef_, head.intercept_, large)
        with_head(int8, head.coef_, head.intercept_, small)
    calib_x, calib_y = sentences(400, seed=2)
    eval_x, eval_y = sentences(400, seed=3)

    def rows(texts: list[str]) -> list[Feeds]:
        feeds = tokens(texts)
        return [{k: v[i : i + 1] for k, v in feeds.items()} for i in range(len(texts))]

    return Pair(
        "MiniLM-L6 classifier",
        small,
        large,
        (rows(calib_x), calib_y),
        (rows(eval_x), eval_y),
        "large: fp32 MiniLM-L6 + head; small: its dynamic int8 (per channel) + the same head; "
        "head trained on 800 fp32 embeddings; 400 sentences to calibrate, 400 to evaluate",
    )


def pooled(session: ort.InferenceSession, feeds: Feeds) -> np.ndarray:
    """Mask-aware mean of the last hidden state, L2-normalised: (batch, 384)."""
    wanted = {i.name for i in session.get_inputs()}
    (hidden,) = session.run(["last_hidden_state"], {k: v for k, v in feeds.items() if k in wanted})
    mask = feeds["attention_mask"][..., None].astype(np.float32)
    mean = (hidden * mask).sum(1) / mask.sum(1)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def with_head(encoder: Path, coef: np.ndarray, intercept: np.ndarray, out: Path) -> Path:
    """The encoder with pooling and a softmax head appended: -> probabilities (batch, 2).

    A binary logistic regression's one logit ``z`` becomes the two logits ``(0, z)``, so the
    softmax gives exactly its probabilities."""
    model = onnx.load(encoder)
    graph = model.graph
    w = np.concatenate([np.zeros_like(coef), coef]).T.astype(np.float32)  # (384, 2)
    b = np.array([0.0, intercept[0]], dtype=np.float32)
    graph.initializer.extend(
        [
            numpy_helper.from_array(w, "h.w"),
            numpy_helper.from_array(b, "h.b"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "h.axis_seq"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "h.axis_last"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Cast", ["attention_mask"], ["h.mask_f"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["h.mask_f", "h.axis_last"], ["h.mask_3d"]),
            helper.make_node("Mul", ["last_hidden_state", "h.mask_3d"], ["h.masked"]),
            helper.make_node("ReduceSum", ["h.masked", "h.axis_seq"], ["h.summed"], keepdims=0),
            helper.make_node("ReduceSum", ["h.mask_3d", "h.axis_seq"], ["h.count"], keepdims=0),
            helper.make_node("Div", ["h.summed", "h.count"], ["h.mean"]),
            helper.make_node("Mul", ["h.mean", "h.mean"], ["h.squares"]),
            helper.make_node("ReduceSum", ["h.squares", "h.axis_last"], ["h.norm2"], keepdims=1),
            helper.make_node("Sqrt", ["h.norm2"], ["h.norm"]),
            helper.make_node("Div", ["h.mean", "h.norm"], ["h.embedding"]),
            helper.make_node("MatMul", ["h.embedding", "h.w"], ["h.mm"]),
            helper.make_node("Add", ["h.mm", "h.b"], ["h.logits"]),
            helper.make_node("Softmax", ["h.logits"], ["probabilities"], axis=-1),
        ]
    )
    while graph.output:
        graph.output.pop()
    graph.output.append(
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])
    )
    onnx.save(model, out)
    return out


# -- measuring -----------------------------------------------------------------------


def probabilities(path: Path, rows: list[Feeds]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(["probabilities"], feeds)[0] for feeds in rows])


def measure(pair: Pair, work: Path, args: argparse.Namespace) -> Measured:
    calib_rows, calib_y = pair.calibration
    small_p = probabilities(pair.small, calib_rows)
    large_p = probabilities(pair.large, calib_rows)
    budgets = {"cascade": args.max_drop, "strict": 0.0}
    calibrations = {name: calibrate(small_p, large_p, calib_y, d) for name, d in budgets.items()}
    for name, calibration in calibrations.items():
        if calibration.chosen is None:
            raise SystemExit(f"{pair.name} {name}: no threshold keeps the budget")
    folder = work / pair.name.split()[0].lower()
    repository = folder / "repository"
    for stage, source in (("small", pair.small), ("large", pair.large)):
        (repository / stage / "1").mkdir(parents=True)
        shutil.copy(source, repository / stage / "1" / "model.onnx")
    cascades = {
        name: {"stages": ["small", "large"], "min_confidence": c.chosen.threshold}
        for name, c in calibrations.items()
        if c.chosen is not None
    }
    config = {
        "repository": {"serve_default_model": False},
        "cascades": cascades,
        "logging": {"requests": "off"},
    }
    servers = ["large", *cascades]
    with DaemonProcess(folder, config, ready_timeout=300) as daemon:
        eval_rows, eval_y = pair.evaluation
        answers = {m: classes(daemon, m, eval_rows) for m in [*servers, "small"]}
        counts = {name: stage_counts(daemon, name) for name in cascades}
        requests = {m: [infer_request(m, r) for r in eval_rows] for m in servers}
        results: dict[str, list[LoadResult]] = {m: [] for m in servers}
        for round_ in range(args.rounds):
            order = servers if round_ % 2 == 0 else servers[::-1]
            for model in order:
                result = run_load(daemon.address, requests[model], args.concurrency, args.duration)
                if result.errors:
                    raise SystemExit(f"{pair.name} {model}: {result.first_error}")
                results[model].append(result)
    runs = [
        CascadeRun(
            name=name,
            calibration=calibrations[name],
            small_share=counts[name]["small"] / max(sum(counts[name].values()), 1),
            accuracy=float((answers[name] == eval_y).mean()),
            results=results[name],
        )
        for name in cascades
    ]
    return Measured(
        pair=pair.name,
        large_accuracy=float((answers["large"] == eval_y).mean()),
        small_accuracy=float((answers["small"] == eval_y).mean()),
        large=results["large"],
        cascades=runs,
    )


def classes(daemon: DaemonProcess, model: str, rows: list[Feeds]) -> np.ndarray:
    import tritonclient.grpc as triton

    answers = []
    with triton.InferenceServerClient(daemon.address) as client:
        for feeds in rows:
            inputs = []
            for name, value in feeds.items():
                tensor = triton.InferInput(name, list(value.shape), _datatype(value))
                tensor.set_data_from_numpy(value)
                inputs.append(tensor)
            answers.append(client.infer(model, inputs).as_numpy("probabilities").argmax())
    return np.array(answers)


def _datatype(value: np.ndarray) -> str:
    return {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}[value.dtype]


def stage_counts(daemon: DaemonProcess, cascade: str) -> dict[str, float]:
    """Requests each stage of ``cascade`` answered so far (the accuracy pass only)."""
    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://127.0.0.1:{daemon.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "appliance_cascade_requests_total"
                and sample.labels["model"] == cascade
            ):
                counts[sample.labels["stage"]] = sample.value
    return counts


# -- report --------------------------------------------------------------------------


def _median(results: list[LoadResult], field: Callable[[LoadResult], float]) -> float:
    return statistics.median(field(r) for r in results)


def report(measured: list[Measured], notes: dict[str, str], args: argparse.Namespace) -> str:
    import psutil

    def throughput(results: list[LoadResult]) -> float:
        return _median(results, lambda r: r.throughput)

    def p99(results: list[LoadResult]) -> float:
        return _median(results, lambda r: r.p99_ms)

    lines = [
        "# Cascade: a small model when confident, its teacher otherwise",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on "
        f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} logical cores, "
        f"Python {platform.python_version()}, onnxruntime {ort.__version__}. "
        "**The box is shared with other work and noisy** (other daemons and benchmarks ran "
        "beside this one): the servers of a pair are measured side by side on one daemon in "
        "the same run, the order reversed every other round, and ratios of medians are what "
        "to read.",
        "",
        "```",
        "python benchmarks/cascade.py " + " ".join(sys.argv[1:]),
        "```",
        "",
        f"Closed loop over gRPC at concurrency {args.concurrency}, {args.duration:.0f} s per "
        f"run after a 1 s warm-up, {args.rounds} rounds; one single-row request per held-out "
        "row, in turn. Thresholds from `compress.cascade.calibrate` on the calibration rows "
        "(what `appliance compress --cascade` runs): the lowest `min_confidence` at which "
        f"the cascade's accuracy is at most {args.max_drop} below the large model's and it "
        f"disagrees with the large model on at most {args.max_drop} of the rows (`cascade`), "
        "and the lowest with no disagreement at all on them (`strict`). Both cascades are "
        "served by the one daemon beside `large`. Accuracy and the share answered by the "
        "small model are measured on the other held-out rows, through the daemon "
        "(`appliance_cascade_requests_total`).",
        "",
        "| pair | served | min_confidence | answered by small | accuracy | req/s | "
        "vs large | p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in measured:
        large_t = throughput(m.large)
        lines.append(
            f"| {m.pair} | large alone | | | {m.large_accuracy:.4f} | {large_t:.1f} | 1.00x | "
            f"{p99(m.large):.1f} |"
        )
        for c in m.cascades:
            lines.append(
                f"| {m.pair} | {c.name} | {c.threshold:.4f} | {c.small_share:.1%} | "
                f"{c.accuracy:.4f} | {throughput(c.results):.1f} | "
                f"{throughput(c.results) / large_t:.2f}x | {p99(c.results):.1f} |"
            )
        lines.append(f"| {m.pair} | (small alone, not timed) | | | {m.small_accuracy:.4f} | | | |")
    lines += ["", "## Targets", ""]
    for m in measured:
        for c in m.cascades:
            drop = m.large_accuracy - c.accuracy
            ratio = throughput(c.results) / throughput(m.large)
            within = drop <= args.max_drop + 1e-9
            text = (
                f"- {m.pair}, `{c.name}`: accuracy {drop:+.4f} below the large model (budget "
                f"{args.max_drop}): {'met' if within else 'NOT met'}; answered by the small "
                f"model {c.small_share:.1%} (target at least 50%): "
                f"{'met' if c.small_share >= 0.5 else 'NOT met'}"
            )
            if m.pair.startswith("MiniLM"):
                text += (
                    f"; throughput {ratio:.2f}x the large model alone (target at least 1.5x): "
                    f"{'met' if ratio >= 1.5 else 'NOT met'}"
                )
            lines.append(text)
    lines += ["", "## Pairs", ""]
    lines += [f"- {m.pair}: {notes[m.pair]}" for m in measured]
    lines += ["", READING]
    lines += ["", "## Runs", "", "| pair | server | round | req/s | p50 ms | p99 ms |"]
    lines += ["|---|---|---|---|---|---|"]
    for m in measured:
        servers = [("large", m.large), *((c.name, c.results) for c in m.cascades)]
        for server, results in servers:
            for i, r in enumerate(results):
                lines.append(
                    f"| {m.pair} | {server} | {i + 1} | {r.throughput:.1f} | {r.p50_ms:.2f} | "
                    f"{r.p99_ms:.2f} |"
                )
    lines += ["", "## Threshold curves (calibration rows)", ""]
    for m in measured:
        chosen = {c.name: c.threshold for c in m.cascades}
        lines += [
            f"### {m.pair}",
            "",
            f"Chosen: `cascade` {chosen['cascade']:.4f}, `strict` {chosen['strict']:.4f} "
            "(the curve marks the budget's choice).",
            "",
            next(c for c in m.cascades if c.name == "cascade").calibration.markdown(),
            "",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-drop", type=float, default=0.01)
    parser.add_argument("--skip-minilm", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    MINILM_WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cascade-") as tmp:
        work = Path(tmp)
        pairs = [tabular_pair(work)]
        if not args.skip_minilm:
            pairs.append(minilm_pair(work))
        measured = [measure(pair, work, args) for pair in pairs]
        notes = {p.name: p.note for p in pairs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(measured, notes, args))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
