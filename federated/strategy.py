"""The ServerApp's strategy: robust aggregation, server-side DP, update decoding, audit.

``build_strategy`` assembles, from the run settings, the stack every round goes through:

    SiteUpdates                      decode encoded updates, drop malformed ones, audit
    └── DP server-side wrapper       optional: clip each update, add noise to the mean
        └── FedAvg | FedMedian | FedTrimmedAvg | Krum     the aggregation rule

The rules and the DP wrapper are Flower's own (``flwr.serverapp.strategy``); this module
adds only what they lack: the server half of ``federated.mods`` (decoding), a guard
against non-finite garbage (a median survives a bad site's values, not its NaNs), and a
record of what every site sent, so a run can show that only arrays and metrics left.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from logging import WARNING
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    FedMedian,
    FedTrimmedAvg,
    Krum,
    Strategy,
)
from flwr.supercore import log

from federated._records import metric_number, to_numpy, to_record
from federated.encoding import decode_update
from federated.errors import UpdateFormatError
from federated.privacy import calibrate_noise, epsilon
from federated.protocol import ARRAYS_KEY, UNIT_WEIGHT_KEY, WEIGHT_KEY
from federated.settings import Aggregation, Privacy, RunSettings


@dataclass(frozen=True)
class ReplyRecord:
    """What one site's reply held, as the server received it (no values, only names)."""

    round: int
    phase: str
    node_id: int
    record_types: dict[str, str]
    array_names: list[str]
    metric_names: list[str]
    config_names: list[str]
    num_bytes: int
    accepted: bool


@dataclass
class ReplyAudit:
    """Every reply of a run, in arrival order; the ServerApp writes it to ``audit.json``."""

    replies: list[ReplyRecord] = field(default_factory=list)

    def record(self, server_round: int, phase: str, msg: Message, accepted: bool) -> None:
        content = msg.content
        self.replies.append(
            ReplyRecord(
                round=server_round,
                phase=phase,
                node_id=msg.metadata.src_node_id,
                record_types={k: type(v).__name__ for k, v in content.items()},
                array_names=[n for r in content.array_records.values() for n in r],
                metric_names=[n for r in content.metric_records.values() for n in r],
                config_names=[n for r in content.config_records.values() for n in r],
                num_bytes=_payload_bytes(content),
                accepted=accepted,
            )
        )

    def uplink_bytes(self, server_round: int) -> int:
        """Bytes of model arrays sites sent for training in ``server_round``."""
        return sum(
            r.num_bytes for r in self.replies if r.round == server_round and r.phase == "train"
        )

    def as_json(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.replies]


def aggregate_metrics(records: list[RecordDict], weighting_key: str) -> MetricRecord:
    """Weighted mean of each metric, except privacy spent (``dp-*``), which is the max.

    The worst site's ε is the run's ε: averaging it would understate the guarantee.
    """
    weights = [metric_number(_single_metrics(r), weighting_key) for r in records]
    total = sum(weights) or 1.0
    out = MetricRecord()
    for name in _single_metrics(records[0]):
        values = [_single_metrics(r).get(name) for r in records]
        numbers = [float(v) for v in values if isinstance(v, int | float)]
        if len(numbers) != len(values):
            continue  # list-valued metrics have no meaningful average
        if name.startswith("dp-"):
            out[name] = max(numbers)
        elif name == weighting_key:
            out[name] = sum(numbers)
        else:
            out[name] = sum(w * v for w, v in zip(weights, numbers, strict=True)) / total
    return out


class SiteUpdates(Strategy):
    """Decode and check each site's update, record it, then let ``inner`` aggregate."""

    def __init__(self, inner: Strategy, audit: ReplyAudit) -> None:
        self.inner = inner
        self.audit = audit
        self._global: dict[str, np.ndarray[Any, Any]] = {}

    def summary(self) -> None:
        self.inner.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._global = to_numpy(arrays)
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        accepted = [m for m in replies if m.has_error() or self._decode(server_round, m)]
        arrays, metrics = self.inner.aggregate_train(server_round, accepted)
        if metrics is not None:
            metrics["uplink-bytes"] = self.audit.uplink_bytes(server_round)
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        accepted = [m for m in replies if m.has_error() or self._metrics_only(server_round, m)]
        return self.inner.aggregate_evaluate(server_round, accepted)

    def _metrics_only(self, server_round: int, msg: Message) -> bool:
        """Record an evaluate reply; False drops one carrying anything but metrics."""
        ok = set(msg.content) == set(msg.content.metric_records)
        if not ok:
            log(
                WARNING,
                "Dropping round %d evaluation from node %d: expected metrics only, got %s",
                server_round,
                msg.metadata.src_node_id,
                sorted(msg.content),
            )
        self.audit.record(server_round, "evaluate", msg, accepted=ok)
        return ok

    def _decode(self, server_round: int, msg: Message) -> bool:
        """Replace an encoded update by full weights in place; False drops the reply."""
        node = msg.metadata.src_node_id
        try:
            _check_only_arrays_and_metrics(msg.content)
            weights = decode_update(self._global, to_numpy(msg.content.array_records[ARRAYS_KEY]))
            if not all(np.isfinite(w).all() for w in weights.values()):
                raise UpdateFormatError("update holds NaN or infinite values")
        except (UpdateFormatError, KeyError) as exc:
            log(WARNING, "Dropping round %d update from node %d: %s", server_round, node, exc)
            self.audit.record(server_round, "train", msg, accepted=False)
            return False
        self.audit.record(server_round, "train", msg, accepted=True)
        msg.content[ARRAYS_KEY] = to_record(weights)
        return True


def build_strategy(settings: RunSettings, audit: ReplyAudit) -> Strategy:
    """The strategy stack for ``settings``; see the module docstring for its layers."""
    weight_key = UNIT_WEIGHT_KEY if settings.privacy is Privacy.SERVER else WEIGHT_KEY
    common: dict[str, Any] = {
        "fraction_train": settings.fraction_train,
        "fraction_evaluate": settings.fraction_evaluate,
        "min_train_nodes": settings.min_train_nodes,
        "min_evaluate_nodes": settings.min_evaluate_nodes,
        "min_available_nodes": settings.min_available_nodes,
        "weighted_by_key": weight_key,
        "train_metrics_aggr_fn": aggregate_metrics,
        "evaluate_metrics_aggr_fn": aggregate_metrics,
    }
    rule: Strategy
    if settings.aggregation is Aggregation.MEDIAN:
        rule = FedMedian(**common)
    elif settings.aggregation is Aggregation.TRIMMED_MEAN:
        rule = FedTrimmedAvg(beta=settings.trim_beta, **common)
    elif settings.aggregation is Aggregation.KRUM:
        rule = Krum(num_malicious_nodes=settings.krum_malicious, **common)
    else:
        rule = FedAvg(**common)
    if settings.privacy is Privacy.SERVER:
        rule = DifferentialPrivacyServerSideFixedClipping(
            rule,
            noise_multiplier=server_noise_multiplier(settings),
            clipping_norm=settings.dp_clip_norm,
            # The fewest sites a round aggregates: noise is then at least what ε assumes.
            num_sampled_clients=settings.min_train_nodes,
        )
    return SiteUpdates(rule, audit)


def server_noise_multiplier(settings: RunSettings) -> float:
    """Sigma for server-side DP: given, or calibrated so a whole site's ε meets the target.

    Each round releases one noisy mean, a Gaussian mechanism on each site's clipped
    update, sampled with rate ``fraction-train``; composition runs over the rounds.
    """
    if settings.dp_noise_multiplier > 0:
        return settings.dp_noise_multiplier
    return calibrate_noise(
        settings.fraction_train,
        settings.num_server_rounds,
        settings.dp_delta,
        settings.dp_target_epsilon,
    )


def server_epsilon(settings: RunSettings, rounds: int) -> float:
    """Site-level ε spent by server-side DP after ``rounds`` rounds."""
    sigma = server_noise_multiplier(settings)
    return epsilon(settings.fraction_train, sigma, rounds, settings.dp_delta)


def _payload_bytes(content: RecordDict) -> int:
    """Bytes of arrays, and of config values (SecAgg+ sends its masked vectors as bytes)."""
    arrays = sum(r.count_bytes() for r in content.array_records.values())
    return arrays + sum(r.count_bytes() for r in content.config_records.values())


def _single_metrics(content: RecordDict) -> MetricRecord:
    records = list(content.metric_records.values())
    if len(records) != 1:
        raise UpdateFormatError(f"reply: expected one MetricRecord, got {len(records)}")
    return records[0]


def _check_only_arrays_and_metrics(content: RecordDict) -> None:
    extra = sorted(set(content) - set(content.array_records) - set(content.metric_records))
    if extra or list(content.array_records) != [ARRAYS_KEY]:
        raise UpdateFormatError(
            "train reply: expected one ArrayRecord 'arrays' and metrics only, got records "
            f"{sorted(content)}"
        )


__all__ = [
    "ReplyAudit",
    "ReplyRecord",
    "SiteUpdates",
    "aggregate_metrics",
    "build_strategy",
    "server_epsilon",
    "server_noise_multiplier",
]
