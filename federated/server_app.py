"""The ServerApp: orchestrate the rounds, then write the final global model.

Runs beside the SuperLink. One run:

1. waits for ``min-available-nodes`` sites and evaluates the untrained model on each
   (round 0, the baseline); for the tabular model the same replies carry per-feature
   sums, pooled into the model's standardisation buffers;
2. runs ``num-server-rounds`` rounds of the strategy ``federated.strategy`` builds, or,
   with ``secure-aggregation``, of SecAgg+ (``federated.secure_aggregation``);
3. writes ``final_model.onnx`` and its weights (``federated.export``), the per-round
   history and the audit of what every site sent, into run config ``output-dir``.

A relative ``output-dir`` resolves against the working directory of the SuperLink.
"""

from __future__ import annotations

import json
import time
from logging import INFO
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Result, Strategy
from flwr.supercore import log

from compress.models import TabularMLP
from federated._records import metric_number, metric_vector
from federated._training import build_model
from federated.errors import NotEnoughSitesError
from federated.export import export_final_model
from federated.protocol import ARRAYS_KEY, CONFIG_KEY, FEATURE_STATS_KEY, METRICS_KEY
from federated.secure_aggregation.server import run_secure_rounds
from federated.settings import Privacy, RunSettings
from federated.strategy import (
    ReplyAudit,
    build_strategy,
    server_epsilon,
    server_noise_multiplier,
)

HISTORY_NAME = "history.json"
_POLL_SECONDS = 1.0
AUDIT_NAME = "audit.json"

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the federated rounds for this run's settings and export the result."""
    settings = RunSettings.from_run_config(context.run_config)
    output_dir = Path(settings.output_dir).absolute()
    audit = ReplyAudit()
    model = build_model(settings)
    strategy = build_strategy(settings, audit)
    baseline = _baseline(grid, strategy, model, settings)
    initial = ArrayRecord(model.state_dict())
    started = time.monotonic()
    if settings.secure_aggregation:
        result = run_secure_rounds(
            grid, context, settings, initial, evaluation=strategy, audit=audit
        )
    else:
        result = strategy.start(
            grid=grid,
            initial_arrays=initial,
            num_rounds=settings.num_server_rounds,
            timeout=settings.round_timeout,
            train_config=ConfigRecord({"local-epochs": settings.local_epochs}),
        )
    elapsed = time.monotonic() - started
    model.load_state_dict(result.arrays.to_torch_state_dict())
    onnx_path = export_final_model(model, settings, output_dir)
    history = _history(settings, result, baseline, elapsed)
    (output_dir / HISTORY_NAME).write_text(json.dumps(history, indent=2))
    (output_dir / AUDIT_NAME).write_text(json.dumps(audit.as_json(), indent=2))
    log(INFO, "Final global model written to %s", onnx_path)


def _baseline(
    grid: Grid, strategy: Strategy, model: torch.nn.Module, settings: RunSettings
) -> dict[str, Any]:
    """Round 0: the untrained model on every site, the baseline for progress.

    The same replies carry per-feature sums for the tabular model, pooled here into the
    model's standardisation buffers, so no extra exchange is spent on them.
    """
    tabular = isinstance(model, TabularMLP)
    content = RecordDict(
        {
            ARRAYS_KEY: ArrayRecord(model.state_dict()),
            CONFIG_KEY: ConfigRecord({FEATURE_STATS_KEY: tabular, "server-round": 0}),
        }
    )
    messages = [
        Message(content, node, MessageType.EVALUATE) for node in _wait_for_sites(grid, settings)
    ]
    replies = list(grid.send_and_receive(messages, timeout=settings.round_timeout))
    metrics = strategy.aggregate_evaluate(0, replies)
    if metrics is None:
        raise NotEnoughSitesError("expected round-0 evaluation replies from the sites, got none")
    if isinstance(model, TabularMLP):
        site_metrics = [r.content.metric_records[METRICS_KEY] for r in replies if not r.has_error()]
        _standardise(model, site_metrics)
    return {k: v for k, v in metrics.items() if not isinstance(v, list)}


def _wait_for_sites(grid: Grid, settings: RunSettings) -> list[int]:
    deadline = time.monotonic() + settings.round_timeout
    while len(nodes := list(grid.get_node_ids())) < settings.min_available_nodes:
        if time.monotonic() > deadline:
            raise NotEnoughSitesError(
                f"expected at least {settings.min_available_nodes} sites within "
                f"{settings.round_timeout:.0f} s, got {len(nodes)}"
            )
        time.sleep(_POLL_SECONDS)
    return nodes


def _standardise(model: TabularMLP, site_metrics: list[MetricRecord]) -> None:
    """Pool per-site feature sums into a global mean and std for the model's buffers."""
    count = sum(metric_number(m, "num-examples") for m in site_metrics)
    total = sum(metric_vector(m, "feature-sum") for m in site_metrics)
    total_sq = sum(metric_vector(m, "feature-sum-sq") for m in site_metrics)
    mean = np.asarray(total) / count
    std = np.sqrt(np.maximum(np.asarray(total_sq) / count - mean**2, 0.0))
    model.set_standardization(torch.from_numpy(mean).float(), torch.from_numpy(std).float())
    log(INFO, "Standardisation fixed from %d examples across sites", int(count))


def _history(
    settings: RunSettings, result: Result, baseline: dict[str, Any], elapsed: float
) -> dict[str, Any]:
    history: dict[str, Any] = {
        "num_server_rounds": settings.num_server_rounds,
        "update_encoding": settings.update_encoding.value,
        "aggregation": settings.aggregation.value,
        "privacy": settings.privacy.value,
        "secure_aggregation": settings.secure_aggregation,
        "seconds": elapsed,
        "evaluate": {
            0: baseline,
            **{r: dict(m) for r, m in result.evaluate_metrics_clientapp.items()},
        },
        "train": {r: dict(m) for r, m in result.train_metrics_clientapp.items()},
    }
    if settings.privacy is Privacy.SERVER:
        history["server_dp"] = {
            "noise_multiplier": server_noise_multiplier(settings),
            "epsilon": server_epsilon(settings, settings.num_server_rounds),
            "delta": settings.dp_delta,
        }
    return history
