"""The server strategy stack, driven with real reply messages: decode, guard, aggregate."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    MessageType,
    Metadata,
    MetricRecord,
    RecordDict,
)
from flwr.common.constant import ErrorCode
from flwr.supercore.task_identity import TaskIdentity

from federated._records import to_numpy, to_record
from federated._training import build_model, get_weights
from federated.encoding import encode_update
from federated.settings import Aggregation, Encoding, Privacy, RunSettings
from federated.strategy import ReplyAudit, SiteUpdates, aggregate_metrics, build_strategy

GLOBAL = get_weights(build_model(RunSettings()))


@pytest.fixture(autouse=True)
def server_task_identity() -> Iterator[None]:
    """Messages built outside a ServerApp process need the ids Flower sets there."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity.run_id = TaskIdentity.node_id = TaskIdentity.task_id = None  # type: ignore[assignment]


class FakeGrid:
    """Only what configure_train needs: the connected node ids."""

    def get_node_ids(self) -> list[int]:
        return [1, 2, 3]


def reply(node: int, content: RecordDict | None = None, error: str | None = None) -> Message:
    metadata = Metadata(
        run_id=1,
        message_id=f"m{node}",
        src_node_id=node,
        dst_node_id=0,
        reply_to_message_id="i",
        group_id="1",
        created_at=time.time(),
        ttl=600.0,
        message_type=MessageType.TRAIN,
    )
    if error is not None:
        return Message(
            error=Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=error),
            metadata=metadata,
        )
    return Message(content=content, metadata=metadata)


def update(node: int, shift: float, encoding: Encoding = Encoding.FLOAT32, n: int = 100) -> Message:
    local = {k: v + np.asarray(shift, v.dtype) for k, v in GLOBAL.items()}
    arrays = to_record(encode_update(GLOBAL, local, encoding))
    metrics = MetricRecord({"num-examples": n, "train-loss": 0.5, "dp-epsilon-total": float(node)})
    return reply(node, RecordDict({"arrays": arrays, "metrics": metrics}))


def stack(settings: RunSettings) -> tuple[SiteUpdates, ReplyAudit]:
    audit = ReplyAudit()
    strategy = build_strategy(settings, audit)
    assert isinstance(strategy, SiteUpdates)
    strategy.configure_train(1, to_record(GLOBAL), ConfigRecord(), FakeGrid())  # type: ignore[arg-type]
    return strategy, audit


def weight(arrays: ArrayRecord | None) -> float:
    assert arrays is not None
    return float(to_numpy(arrays)["net.0.bias"][0] - GLOBAL["net.0.bias"][0])


@pytest.mark.parametrize("encoding", list(Encoding))
def test_encoded_updates_are_decoded_before_fedavg(encoding: Encoding) -> None:
    strategy, audit = stack(RunSettings())
    replies = [update(1, 0.1, encoding), update(2, 0.2, encoding), update(3, 0.3, encoding)]
    arrays, metrics = strategy.aggregate_train(1, replies)
    assert weight(arrays) == pytest.approx(0.2, abs=2e-3)
    assert metrics is not None and metrics["uplink-bytes"] == audit.uplink_bytes(1) > 0


def test_median_ignores_one_site_sending_garbage() -> None:
    strategy, _ = stack(RunSettings(aggregation=Aggregation.MEDIAN))
    arrays, _ = strategy.aggregate_train(1, [update(1, 0.1), update(2, 0.12), update(3, 1e6)])
    assert weight(arrays) == pytest.approx(0.12, abs=1e-4)


def test_trimmed_mean_and_krum_also_resist_it() -> None:
    for settings in (
        RunSettings(aggregation=Aggregation.TRIMMED_MEAN, trim_beta=0.34),
        RunSettings(aggregation=Aggregation.KRUM, krum_malicious=0),
    ):
        strategy, _ = stack(settings)
        arrays, _ = strategy.aggregate_train(1, [update(1, 0.1), update(2, 0.12), update(3, 1e6)])
        assert abs(weight(arrays)) < 0.2


def test_fedavg_would_be_pulled_away_by_the_same_site() -> None:
    strategy, _ = stack(RunSettings())
    arrays, _ = strategy.aggregate_train(1, [update(1, 0.1), update(2, 0.12), update(3, 1e6)])
    assert weight(arrays) > 1e5


def test_nan_update_is_dropped_and_the_round_completes() -> None:
    strategy, audit = stack(RunSettings())
    arrays, _ = strategy.aggregate_train(1, [update(1, 0.1), update(2, 0.3), update(3, np.nan)])
    assert weight(arrays) == pytest.approx(0.2, abs=1e-4)
    assert [r.accepted for r in audit.replies] == [True, True, False]


def test_a_site_dropping_out_leaves_the_others_to_finish_the_round() -> None:
    strategy, _ = stack(RunSettings())
    dropped = reply(3, error="node unavailable")
    arrays, metrics = strategy.aggregate_train(1, [update(1, 0.1), update(2, 0.3), dropped])
    assert weight(arrays) == pytest.approx(0.2, abs=1e-4)
    assert metrics is not None and metrics["num-examples"] == 200


def test_reply_carrying_a_config_record_is_refused() -> None:
    strategy, audit = stack(RunSettings())
    sneaky = update(3, 0.3)
    sneaky.content["extra"] = ConfigRecord({"rows": "patient data"})
    arrays, _ = strategy.aggregate_train(1, [update(1, 0.1), update(2, 0.3), sneaky])
    assert weight(arrays) == pytest.approx(0.2, abs=1e-4)
    assert audit.replies[-1].accepted is False


def test_metrics_average_by_examples_but_privacy_takes_the_worst_site() -> None:
    records = [
        RecordDict({"m": MetricRecord({"num-examples": 1, "acc": 0.0, "dp-epsilon-total": 3.0})}),
        RecordDict({"m": MetricRecord({"num-examples": 3, "acc": 1.0, "dp-epsilon-total": 5.0})}),
    ]
    out = aggregate_metrics(records, "num-examples")
    assert out["acc"] == pytest.approx(0.75)
    assert out["dp-epsilon-total"] == 5.0
    assert out["num-examples"] == 4


def test_server_side_dp_adds_noise_to_the_mean() -> None:
    settings = RunSettings(privacy=Privacy.SERVER, dp_noise_multiplier=1.0, dp_clip_norm=0.5)
    strategy, _ = stack(settings)
    replies = [update(i, 1e-3) for i in (1, 2, 3)]
    for r in replies:
        r.content["metrics"]["unit-weight"] = 1
    arrays, _ = strategy.aggregate_train(1, replies)
    assert arrays is not None
    noise = to_numpy(arrays)["net.0.weight"] - GLOBAL["net.0.weight"]
    # Noise std is sigma * C / sampled sites = 1.0 * 0.5 / 2.
    assert np.std(noise) == pytest.approx(0.25, rel=0.1)


def test_evaluate_reply_carrying_arrays_is_refused() -> None:
    strategy, audit = stack(RunSettings())
    good = reply(1, RecordDict({"metrics": MetricRecord({"num-examples": 10, "eval-acc": 0.9})}))
    leaky = reply(2, RecordDict({"metrics": MetricRecord({"num-examples": 10, "eval-acc": 0.1})}))
    leaky.content["rows"] = to_record({"x": np.zeros((10, 30), np.float32)})
    metrics = strategy.aggregate_evaluate(1, [good, leaky])
    assert metrics is not None and metrics["eval-acc"] == pytest.approx(0.9)
    assert [r.accepted for r in audit.replies] == [True, False]
