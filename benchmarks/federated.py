"""Federated benchmark: three non-IID sites vs centralized training, per encoding and DP.

Writes ``benchmarks/results/federated.md``. Run from the repository root:

    python -m benchmarks.federated [--rounds 20] [--seeds 5]

Data: scikit-learn's bundled breast-cancer set (569 rows, 30 features, 2 classes); 30 %
held out, stratified, as the common test set; the rest split over three sites with a
Dirichlet(alpha=0.5) draw of each class's share per site (non-IID label skew).

What runs: the app's real ClientApp (``federated.client_app.app``, mods included) and
the real strategy stack (``federated.strategy.build_strategy``) driven by Flower's own
``Strategy.start`` loop, with an in-process grid instead of the deployment engine. The
engine costs ~15 s per round in polling and process start-up alone (see the results
file), which would make 20 rounds x 5 configurations x several seeds take hours; the
messages, records and bytes are the same objects either way.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import flwr
import numpy as np
import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    Metadata,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from compress.models import TabularMLP
from federated._records import metric_number, to_record
from federated._training import build_model, evaluate, set_weights, train
from federated.client_app import app as client_app
from federated.data import SiteData
from federated.secure_aggregation.server import run_secure_rounds
from federated.settings import Aggregation, Encoding, Privacy, RunSettings
from federated.strategy import ReplyAudit, build_strategy

RESULTS = Path(__file__).parent / "results" / "federated.md"
NUM_SITES = 3
ALPHA = 0.5
MIN_SITE_ROWS = 25
# Long enough for centralized training to converge: the reference is its best, not a
# budget-matched run.
CENTRAL_EPOCHS = 100
DP_NOTE = (
    "Runs without DP are reproducible (batch order is seeded per site and round). DP rows "
    "vary from run to run by design: the ClientApp draws DP noise from OS entropy."
)
SECAGG_NOTE = (
    "SecAgg+ rows run flwr's SecAgg+ protocol (four exchanges per round: keys, key shares, "
    "masked updates, unmasking) through the app's `secure-aggregation` option; their bytes "
    "are everything the sites sent in all four. The server sees only the weighted sum of "
    "the updates, quantized to 2^22 levels over [-8, 8] after scaling by examples/1000."
)
# Measured with tests/federated/test_deployment.py on the machine named in the results.
DEPLOYMENT_ROUND_SECONDS = (
    "15-25 s per exchange (train or evaluate): 49 s for two train-only rounds in the "
    "end-to-end test, 66 s for two train + evaluate rounds run by hand; one SecAgg+ "
    "round (four exchanges) 37 s"
)


@dataclass(frozen=True)
class Split:
    sites: list[SiteData]
    pooled: SiteData
    test: SiteData


@dataclass
class RunRecord:
    name: str
    accuracy: list[float] = field(default_factory=list)  # test accuracy after round r
    uplink_bytes: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    epsilon: float | None = None


class InProcessGrid:
    """The part of Flower's ``Grid`` a strategy uses, delivering to in-process sites.

    Replies are built by the real ClientApp from real ``Message`` objects; each site
    keeps its own ``Context`` (so its DP ledger persists across rounds, as on a node).
    """

    def __init__(
        self,
        sites: Sequence[Path],
        run_config: dict[str, bool | int | float | str],
        byzantine: int | None = None,
    ):
        # Node id of a site whose train replies are replaced by large random weights.
        self.byzantine = byzantine
        self.rng = np.random.default_rng(0)
        self.contexts = {
            node: Context(
                run_id=1,
                node_id=node,
                node_config={"data-path": str(path)},
                state=RecordDict(),
                run_config=run_config,
            )
            for node, path in enumerate(sites, start=101)
        }

    @property
    def run(self) -> Run:  # the legacy workflow (SecAgg+) reads the run id from here
        return Run.create_empty(run_id=1)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float) -> list[Message]:
        return [self._deliver(m) for m in messages]

    def _deliver(self, message: Message) -> Message:
        node = message.metadata.dst_node_id
        # A copy per site, as the wire would give: sites never share objects.
        metadata = Metadata(
            run_id=1,
            message_id=f"m-{time.monotonic_ns()}",
            src_node_id=0,
            dst_node_id=node,
            reply_to_message_id="",
            group_id=message.metadata.group_id,
            created_at=time.time(),
            ttl=3600.0,
            message_type=message.metadata.message_type,
        )
        incoming = Message(content=copy.deepcopy(message.content), metadata=metadata)
        reply = client_app(incoming, self.contexts[node])
        if node == self.byzantine and "arrays" in reply.content.array_records:
            garbage = {
                k: self.rng.normal(0, 10, v.numpy().shape).astype(v.numpy().dtype)
                for k, v in reply.content.array_records["arrays"].items()
            }
            reply.content["arrays"] = to_record(garbage)
        return reply


def dirichlet_split(x: np.ndarray, y: np.ndarray, seed: int) -> list[np.ndarray]:
    """Row indices per site: each class's rows shared out by a Dirichlet(alpha) draw."""
    rng = np.random.default_rng(seed)
    while True:
        parts: list[list[int]] = [[] for _ in range(NUM_SITES)]
        for label in np.unique(y):
            rows = rng.permutation(np.flatnonzero(y == label))
            shares = rng.dirichlet([ALPHA] * NUM_SITES)
            cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(int)
            for site, chunk in enumerate(np.split(rows, cuts)):
                parts[site].extend(chunk.tolist())
        if min(len(p) for p in parts) >= MIN_SITE_ROWS:
            return [np.asarray(sorted(p)) for p in parts]


def make_split(seed: int) -> Split:
    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x.astype(np.float32), y, test_size=0.3, stratify=y, random_state=seed
    )
    sites = [
        SiteData(x_train[rows], y_train[rows].astype(np.int64))
        for rows in dirichlet_split(x_train, y_train, seed)
    ]
    return Split(
        sites=sites,
        pooled=SiteData(x_train, y_train.astype(np.int64)),
        test=SiteData(x_test, y_test.astype(np.int64)),
    )


def write_sites(split: Split, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, site in enumerate(split.sites):
        path = folder / f"site{i}.npz"
        np.savez(path, x=site.x, y=site.y)
        paths.append(path)
    return paths


def standardised_model(settings: RunSettings, data: SiteData) -> TabularMLP:
    """The initial model with the pooled mean/std the round-0 feature sums give."""
    model = build_model(settings)
    assert isinstance(model, TabularMLP)
    model.set_standardization(torch.from_numpy(data.x.mean(0)), torch.from_numpy(data.x.std(0)))
    return model


def run_centralized(settings: RunSettings, split: Split, epochs: int) -> RunRecord:
    record = RunRecord("centralized (pooled data)")
    model = standardised_model(settings, split.pooled)
    generator = torch.Generator().manual_seed(settings.seed)
    for _ in range(epochs):
        start = time.perf_counter()
        train(model, split.pooled, settings, generator)
        record.seconds.append(time.perf_counter() - start)
        record.accuracy.append(evaluate(model, split.test)[1])
    return record


def run_federated(
    name: str, settings: RunSettings, split: Split, folder: Path, byzantine: bool = False
) -> RunRecord:
    record = RunRecord(name)
    run_config = {
        "num-server-rounds": settings.num_server_rounds,
        "local-epochs": settings.local_epochs,
        "learning-rate": settings.learning_rate,
        "momentum": settings.momentum,
        "update-encoding": settings.update_encoding.value,
        "privacy": settings.privacy.value,
        "dp-target-epsilon": settings.dp_target_epsilon,
        "dp-clip-norm": settings.dp_clip_norm,
        "min-available-nodes": NUM_SITES,
        "secure-aggregation": settings.secure_aggregation,
        "seed": settings.seed,
    }
    grid = InProcessGrid(write_sites(split, folder), run_config, 103 if byzantine else None)
    audit = ReplyAudit()
    strategy = build_strategy(settings, audit)
    model = standardised_model(settings, split.pooled)
    clock = [time.perf_counter()]

    def central_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        if server_round > 0:
            now = time.perf_counter()
            record.seconds.append(now - clock[0])
            clock[0] = now
            set_weights(model, {k: v.numpy() for k, v in arrays.items()})
            record.accuracy.append(evaluate(model, split.test)[1])
            record.uplink_bytes.append(audit.uplink_bytes(server_round))
        clock[0] = time.perf_counter()
        return MetricRecord({"test-acc": record.accuracy[-1] if record.accuracy else 0.0})

    initial = ArrayRecord(model.state_dict())
    if settings.secure_aggregation:
        server = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
        result = run_secure_rounds(
            grid,  # type: ignore[arg-type]
            server,
            settings,
            initial,
            evaluation=CentrallyEvaluated(strategy, central_evaluate),  # type: ignore[arg-type]
            audit=audit,
        )
    else:
        result = strategy.start(
            grid=grid,  # type: ignore[arg-type]
            initial_arrays=initial,
            num_rounds=settings.num_server_rounds,
            evaluate_fn=central_evaluate,
        )
    if settings.privacy is Privacy.CLIENT:
        last = result.train_metrics_clientapp[settings.num_server_rounds]
        record.epsilon = metric_number(last, "dp-epsilon-total")
    return record


class CentrallyEvaluated:
    """The run's strategy, also scoring each round's global model on the common test set.

    ``run_secure_rounds`` hands its evaluation strategy the global arrays every round;
    this is where the benchmark reads them (``Strategy.start`` takes an ``evaluate_fn``).
    """

    def __init__(self, strategy: Strategy, evaluate: Callable[[int, ArrayRecord], object]):
        self._strategy = strategy
        self._evaluate = evaluate

    def __getattr__(self, name: str) -> object:
        return getattr(self._strategy, name)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._evaluate(server_round, arrays)
        return self._strategy.configure_evaluate(server_round, arrays, config, grid)


def with_changes(base: RunSettings, **changes: object) -> RunSettings:
    """``base`` with some settings changed, validated again."""
    return RunSettings(**(base.model_dump() | changes))


def configurations(base: RunSettings) -> list[tuple[str, RunSettings, bool]]:
    """(name, settings, whether site 3 sends garbage) for every federated run."""
    dp = with_changes(base, privacy=Privacy.CLIENT)
    return [
        ("FedAvg float32", base, False),
        ("FedAvg fp16", with_changes(base, update_encoding=Encoding.FP16), False),
        ("FedAvg int8", with_changes(base, update_encoding=Encoding.INT8), False),
        ("DP-SGD eps<=8 float32", dp, False),
        ("DP-SGD eps<=8 int8", with_changes(dp, update_encoding=Encoding.INT8), False),
        ("SecAgg+ float32", with_changes(base, secure_aggregation=True), False),
        ("SecAgg+ with DP-SGD eps<=8", with_changes(dp, secure_aggregation=True), False),
        ("FedAvg, site 3 sends garbage", base, True),
        (
            "FedMedian, site 3 sends garbage",
            with_changes(base, aggregation=Aggregation.MEDIAN),
            True,
        ),
    ]


def mean(values: Iterable[float]) -> float:
    return statistics.fmean(values)


def report(runs: dict[str, list[RunRecord]], base: RunSettings, seeds: int, elapsed: float) -> str:
    central = runs["centralized (pooled data)"]
    central_final = mean(r.accuracy[-1] for r in central)
    float32_bytes = mean(mean(r.uplink_bytes) for r in runs["FedAvg float32"])
    lines = [
        "# Federated learning benchmark",
        "",
        f"Generated by `python -m benchmarks.federated --rounds {base.num_server_rounds} "
        f"--seeds {seeds}` in {elapsed:.0f} s.",
        "",
        f"- Machine: {platform.machine()}, {_cores()} cores, {platform.platform()}; "
        f"Python {platform.python_version()}, flwr {flwr.__version__}, torch {torch.__version__}",
        "- Data: scikit-learn breast cancer (569 rows, 30 features, 2 classes); 30 % "
        "stratified test set; the rest over 3 sites, Dirichlet(alpha=0.5) label skew; "
        f"{seeds} seeds (split, initial model and batch order change with the seed).",
        f"- Model: `TabularMLP(30, 2, hidden=(64, 32))`; SGD lr {base.learning_rate}, batch "
        f"{base.batch_size}, {base.local_epochs} local epoch(s) per round; "
        f"{base.num_server_rounds} rounds; centralized: the same model and optimiser for "
        f"{CENTRAL_EPOCHS} epochs on the pooled training rows (converged; the per-round "
        "table shows its first epochs).",
        "- Engine: the real ClientApp (mods included) and strategy stack, driven by Flower's "
        "`Strategy.start` with an in-process grid, not the deployment engine (see below).",
        "",
        "## Summary (mean over seeds)",
        "",
        "| configuration | final test acc. | vs centralized | first round within 2 pts | "
        "uplink bytes/round (3 sites) | vs float32 | compute s/round | privacy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, records in runs.items():
        curve = [mean(vals) for vals in zip(*(r.accuracy for r in records), strict=True)]
        final = curve[-1]
        within = next((i + 1 for i, a in enumerate(curve) if a >= central_final - 0.02), None)
        sent = mean(mean(r.uplink_bytes) for r in records) if records[0].uplink_bytes else None
        eps = [r.epsilon for r in records if r.epsilon is not None]
        lines.append(
            f"| {name} | {100 * final:.2f} % "
            f"(sd {100 * statistics.pstdev(r.accuracy[-1] for r in records):.2f}) "
            f"| {100 * (final - central_final):+.2f} pts "
            f"| {within if within and sent is not None else '-'} "
            f"| {f'{sent:,.0f}' if sent else '-'} "
            f"| {_bytes_ratio(float32_bytes, sent)} "
            f"| {mean(mean(r.seconds) for r in records):.3f} "
            f"| {f'eps {max(eps):.2f} at delta {base.dp_delta:g}' if eps else '-'} |"
        )
    lines += ["", "## Targets", "", *targets(runs, central_final), "", DP_NOTE, ""]
    lines += [SECAGG_NOTE, ""]
    lines += [
        "## Wall time per round",
        "",
        "The compute column above is in-process time per round for all three sites on this",
        "box. On Flower's deployment engine (`flower-superlink` + 3 `flower-supernode` on",
        f"loopback) a round costs {DEPLOYMENT_ROUND_SECONDS}. Each train",
        "or evaluate exchange waits for the SuperNode's 3 s poll, starts a fresh ClientApp",
        "process (importing torch, ~2-3 s) and the ServerApp's 3 s poll for replies; the",
        "training itself is a fraction of a second. That is why this benchmark drives the",
        "same ClientApp and strategy in process instead.",
        "",
    ]
    lines += ["## Test accuracy per round (mean over seeds, %)", ""]
    names = list(runs)
    lines.append("| round | " + " | ".join(names) + " |")
    lines.append("|---" * (len(names) + 1) + "|")
    for i in range(base.num_server_rounds):
        cells = [f"{100 * mean(r.accuracy[i] for r in runs[n]):.2f}" for n in names]
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _bytes_ratio(float32_bytes: float, sent: float | None) -> str:
    if not sent:
        return "-"
    ratio = float32_bytes / sent
    return f"{ratio:.2f}x smaller" if ratio >= 1 else f"{1 / ratio:.2f}x larger"


def targets(runs: dict[str, list[RunRecord]], central_final: float) -> list[str]:
    """The issue's three targets, each with the measured figure and PASS/MISS."""

    def final(name: str) -> float:
        return mean(r.accuracy[-1] for r in runs[name])

    def curve(name: str) -> list[float]:
        return [mean(v) for v in zip(*(r.accuracy for r in runs[name]), strict=True)]

    first = next(
        (i + 1 for i, a in enumerate(curve("FedAvg float32")) if a >= central_final - 0.02), None
    )
    ratio = mean(mean(r.uplink_bytes) for r in runs["FedAvg float32"]) / mean(
        mean(r.uplink_bytes) for r in runs["FedAvg int8"]
    )
    int8_loss = 100 * (final("FedAvg float32") - final("FedAvg int8"))
    dp_loss = 100 * (final("FedAvg float32") - final("DP-SGD eps<=8 float32"))
    eps = max(r.epsilon or 0.0 for r in runs["DP-SGD eps<=8 float32"])

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    return [
        f"- Within 2 points of centralized ({100 * central_final:.2f} %) in at most 20 rounds: "
        f"FedAvg float32 first gets there at round {first or 'never'}. "
        f"**{verdict(first is not None and first <= 20)}**",
        f"- int8 at least 3.5x fewer bytes than float32: {ratio:.2f}x; accuracy loss at most "
        f"0.5 points: {int8_loss:+.2f} points. **{verdict(ratio >= 3.5 and int8_loss <= 0.5)}**",
        f"- DP-SGD at eps <= 8 (delta 1e-5; measured eps {eps:.2f}) within 5 points of "
        f"non-private: {dp_loss:+.2f} points. **{verdict(eps <= 8 and dp_loss <= 5)}**",
    ]


def _cores() -> int:
    import os

    return os.cpu_count() or 1


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workdir", type=Path, help="site files (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="federated-benchmark-") as scratch:
        run_all(args, args.workdir or Path(scratch))


def run_all(args: argparse.Namespace, workdir: Path) -> None:
    torch.set_num_threads(1)
    # Flower sets these ids in a ServerApp process; messages cannot be built without them.
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    started = time.perf_counter()
    runs: dict[str, list[RunRecord]] = {}
    base = RunSettings(
        num_server_rounds=args.rounds,
        local_epochs=2,
        learning_rate=0.1,
        min_train_nodes=NUM_SITES,
        min_evaluate_nodes=NUM_SITES,
        min_available_nodes=NUM_SITES,
    )
    for seed in range(args.seeds):
        split = make_split(seed)
        seeded = with_changes(base, seed=seed)
        central = run_centralized(seeded, split, CENTRAL_EPOCHS)
        runs.setdefault(central.name, []).append(central)
        for name, settings, byzantine in configurations(seeded):
            folder = workdir / f"seed{seed}"
            record = run_federated(name, settings, split, folder, byzantine)
            runs.setdefault(name, []).append(record)
            print(f"seed {seed} {name}: {100 * runs[name][-1].accuracy[-1]:.2f} %", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(runs, base, args.seeds, time.perf_counter() - started))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
