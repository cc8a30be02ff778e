"""The site's ClientApp: train and evaluate on local data, reply with arrays and metrics.

Runs inside the site's SuperNode. It reads the site's data from node config
``data-path`` (``federated.data``), trains the shared model (``federated._training``),
and replies with model weights and a few aggregate metrics, nothing else: no rows, no
labels, no per-example values. With run config ``privacy = "client"`` it trains with
DP-SGD and reports the ε it has spent; ``federated.mods.update_encoding_mod`` encodes
the weights on the way out; ``federated.secure_aggregation.secure_aggregation_mod``
carries SecAgg+ rounds.

A site's mistake (missing data, unknown label, a bad run config value) is raised as a
``FederatedError``; the outermost mod (``federated.mods.error_reply_mod``) logs it in one
line and sends it back as an error reply, and the round goes on with the other sites.
"""

from __future__ import annotations

import logging
import secrets

import numpy as np
import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from federated._records import metric_number, to_numpy, to_record
from federated._training import (
    DpSgdConfig,
    build_model,
    evaluate,
    get_weights,
    sampling_rate,
    set_weights,
    steps_per_round,
    train,
)
from federated.data import SiteData, data_path_from_node_config, load_site_data
from federated.mods import error_reply_mod, update_encoding_mod
from federated.privacy import PrivacyLedger, calibrate_noise
from federated.protocol import (
    ARRAYS_KEY,
    CONFIG_KEY,
    FEATURE_STATS_KEY,
    METRICS_KEY,
    UNIT_WEIGHT_KEY,
)
from federated.secure_aggregation.site import secure_aggregation_mod
from federated.settings import Privacy, RunSettings

_log = logging.getLogger("federated.site")
_LEDGER_KEY = "dp-ledger"

# The first mod is the outermost: it sees every error the others and the handlers raise.
app = ClientApp(mods=[error_reply_mod, secure_aggregation_mod, update_encoding_mod])


def _site(context: Context) -> tuple[RunSettings, SiteData]:
    settings = RunSettings.from_run_config(context.run_config)
    data = load_site_data(data_path_from_node_config(dict(context.node_config)), settings)
    return settings, data


@app.train()
def train_handler(msg: Message, context: Context) -> Message:
    """Train the global model on local data; reply with weights and training metrics."""
    # Several SuperNodes may share a small box: one thread each avoids oversubscription.
    torch.set_num_threads(1)
    settings, data = _site(context)
    model = build_model(settings)
    set_weights(model, to_numpy(msg.content.array_records[ARRAYS_KEY]))
    generator = _generator(settings, context, msg)
    ledger = _ledger(context, settings, len(data)) if settings.privacy is Privacy.CLIENT else None
    dp = DpSgdConfig(settings.dp_clip_norm, ledger.noise_multiplier) if ledger else None
    result = train(model, data, settings, generator, dp)
    metrics = MetricRecord(
        {"train-loss": result.loss, "num-examples": result.num_examples, "steps": result.steps}
    )
    if ledger is not None:
        eps_round, eps_total = ledger.spend(result.steps)
        _save_ledger(context, ledger)
        metrics["dp-epsilon-round"] = eps_round
        metrics["dp-epsilon-total"] = eps_total
        metrics["dp-noise-multiplier"] = ledger.noise_multiplier
        _log.info(
            "DP-SGD: ε=%.3f this round, %.3f in total (δ=%g)", eps_round, eps_total, ledger.delta
        )
    _add_unit_weight(metrics, settings)
    content = RecordDict({ARRAYS_KEY: to_record(get_weights(model)), METRICS_KEY: metrics})
    return Message(content, reply_to=msg)


@app.evaluate()
def evaluate_handler(msg: Message, context: Context) -> Message:
    """Evaluate the global model on local data; reply with loss, accuracy and count."""
    settings, data = _site(context)
    model = build_model(settings)
    set_weights(model, to_numpy(msg.content.array_records[ARRAYS_KEY]))
    loss, accuracy = evaluate(model, data)
    metrics = MetricRecord({"eval-loss": loss, "eval-acc": accuracy, "num-examples": len(data)})
    if msg.content.config_records.get(CONFIG_KEY, ConfigRecord()).get(FEATURE_STATS_KEY):
        _add_feature_stats(metrics, data)
    _add_unit_weight(metrics, settings)
    return Message(RecordDict({METRICS_KEY: metrics}), reply_to=msg)


def _add_feature_stats(metrics: MetricRecord, data: SiteData) -> None:
    """Per-feature sum and sum of squares, so the server can standardise inputs.

    Asked for once, with the round-0 baseline evaluation. They are aggregates over the
    site's rows and are not covered by the DP accounting (see the README).
    """
    x = data.x.reshape(len(data), -1).astype(np.float64)  # (n, features)
    metrics["feature-sum"] = x.sum(axis=0).tolist()
    metrics["feature-sum-sq"] = np.square(x).sum(axis=0).tolist()


def _generator(settings: RunSettings, context: Context, msg: Message) -> torch.Generator:
    """Batch order (and DP noise) randomness for one round at one site.

    Under DP it comes from OS entropy: a seeded generator would let whoever knows the
    seed subtract the noise. Without DP it is derived from (seed, node, round), so runs
    that differ only in update encoding see the same batches and compare cleanly.
    """
    if settings.privacy is Privacy.CLIENT:
        return torch.Generator().manual_seed(secrets.randbits(63))
    config = msg.content.config_records.get(CONFIG_KEY, ConfigRecord())
    server_round = config.get("server-round", 0)
    entropy = [settings.seed, context.node_id, server_round if isinstance(server_round, int) else 0]
    seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(seed)


def _add_unit_weight(metrics: MetricRecord, settings: RunSettings) -> None:
    if settings.privacy is Privacy.SERVER:
        metrics[UNIT_WEIGHT_KEY] = 1


def _ledger(context: Context, settings: RunSettings, num_examples: int) -> PrivacyLedger:
    """This site's privacy ledger for the run, kept in the node-local context state.

    The noise multiplier is fixed at the first round: given, or calibrated so that all
    planned rounds together stay within the target ε.
    """
    saved = context.state.metric_records.get(_LEDGER_KEY)
    if saved is not None:
        return PrivacyLedger(
            sampling_rate=metric_number(saved, "sampling-rate"),
            noise_multiplier=metric_number(saved, "noise-multiplier"),
            delta=metric_number(saved, "delta"),
            steps=int(metric_number(saved, "steps")),
        )
    q = sampling_rate(settings, num_examples)
    sigma = settings.dp_noise_multiplier or calibrate_noise(
        q,
        steps_per_round(settings, num_examples) * settings.num_server_rounds,
        settings.dp_delta,
        settings.dp_target_epsilon,
    )
    return PrivacyLedger(sampling_rate=q, noise_multiplier=sigma, delta=settings.dp_delta)


def _save_ledger(context: Context, ledger: PrivacyLedger) -> None:
    context.state[_LEDGER_KEY] = MetricRecord(
        {
            "sampling-rate": ledger.sampling_rate,
            "noise-multiplier": ledger.noise_multiplier,
            "delta": ledger.delta,
            "steps": ledger.steps,
        }
    )
