"""The ClientApp in process, with real Flower ``Message`` and ``Context`` objects."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
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

from compress.models import TabularMLP
from federated._records import to_numpy
from federated._training import build_model, get_weights
from federated.client_app import app
from federated.data import load_site_data
from federated.encoding import INT8_KEY, SCALE_KEY, decode_update
from federated.mods import error_reply_mod, update_encoding_mod
from federated.settings import RunSettings, UserConfigValue
from tests.federated._messages import incoming


def context(data_path: Path, **run_config: UserConfigValue) -> Context:
    return Context(
        run_id=1,
        node_id=7,
        node_config={"data-path": str(data_path)},
        state=RecordDict(),
        run_config={k.replace("_", "-"): v for k, v in run_config.items()},
    )


def train_message(arrays: ArrayRecord | None = None) -> Message:
    arrays = arrays or ArrayRecord(build_model(RunSettings()).state_dict())
    content = RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": 1})})
    return incoming(content, MessageType.TRAIN)


def evaluate_message(arrays: ArrayRecord) -> Message:
    return incoming(RecordDict({"arrays": arrays, "config": ConfigRecord()}), MessageType.EVALUATE)


def assert_only_arrays_and_metrics(reply: Message) -> None:
    assert not reply.has_error(), reply.error.reason
    kinds = {type(record) for record in reply.content.values()}
    assert kinds <= {ArrayRecord, MetricRecord}


def test_train_replies_with_weights_and_aggregate_metrics_only(site_csv: Path) -> None:
    reply = app(train_message(), context(site_csv))
    assert_only_arrays_and_metrics(reply)
    assert list(reply.content) == ["arrays", "metrics"]
    assert list(reply.content["arrays"]) == list(build_model(RunSettings()).state_dict())
    metrics = reply.content["metrics"]
    assert metrics["num-examples"] == 150
    assert set(metrics) == {"train-loss", "num-examples", "steps"}
    assert reply.metadata.reply_to_message_id


def test_training_improves_local_accuracy(site_csv: Path) -> None:
    settings = RunSettings()
    model = build_model(settings)
    assert isinstance(model, TabularMLP)
    # Give the untrained model sensible standardisation, as the server's query round does.
    data = load_site_data(site_csv, settings)
    model.set_standardization(torch.from_numpy(data.x.mean(0)), torch.from_numpy(data.x.std(0)))
    arrays = ArrayRecord(model.state_dict())
    ctx = context(site_csv, local_epochs=3)
    before = app(evaluate_message(arrays), ctx).content["metrics"]["eval-acc"]
    trained = app(train_message(arrays), ctx).content["arrays"]
    after = app(evaluate_message(trained), ctx).content["metrics"]["eval-acc"]
    assert after > before + 0.1


def test_int8_mod_encodes_the_update_and_it_decodes(site_csv: Path) -> None:
    message = train_message()
    global_weights = to_numpy(message.content["arrays"])
    reply = app(message, context(site_csv, update_encoding="int8"))
    assert_only_arrays_and_metrics(reply)
    encoded = to_numpy(reply.content["arrays"])
    assert set(encoded) == {INT8_KEY, SCALE_KEY}
    assert encoded[INT8_KEY].dtype == np.int8
    decoded = decode_update(global_weights, encoded)
    assert list(decoded) == list(global_weights)


def test_client_dp_reports_epsilon_per_round_and_in_total(site_csv: Path) -> None:
    ctx = context(site_csv, privacy="client", num_server_rounds=4, dp_target_epsilon=8.0)
    first = app(train_message(), ctx).content["metrics"]
    second = app(train_message(), ctx).content["metrics"]
    assert first["dp-epsilon-round"] == pytest.approx(second["dp-epsilon-round"])
    assert first["dp-epsilon-total"] < second["dp-epsilon-total"] <= 8.0
    assert first["dp-noise-multiplier"] == second["dp-noise-multiplier"] > 0


def test_evaluate_replies_with_metrics_only(site_csv: Path) -> None:
    arrays = ArrayRecord(build_model(RunSettings()).state_dict())
    reply = app(evaluate_message(arrays), context(site_csv))
    assert_only_arrays_and_metrics(reply)
    assert set(reply.content["metrics"]) == {"eval-loss", "eval-acc", "num-examples"}


def test_round_zero_evaluation_can_carry_feature_sums(site_csv: Path) -> None:
    arrays = ArrayRecord(build_model(RunSettings()).state_dict())
    content = RecordDict({"arrays": arrays, "config": ConfigRecord({"feature-stats": True})})
    metrics = app(incoming(content, MessageType.EVALUATE), context(site_csv)).content["metrics"]
    assert metrics["num-examples"] == 150
    assert len(metrics["feature-sum"]) == len(metrics["feature-sum-sq"]) == 30


def test_missing_data_is_an_error_reply_with_the_reason(tmp_path: Path) -> None:
    reply = app(train_message(), context(tmp_path / "gone.csv"))
    assert reply.has_error()
    assert "SiteDataMissingError" in reply.error.reason
    assert "gone.csv" in reply.error.reason


def test_unknown_label_is_an_error_reply(
    breast_cancer: tuple[np.ndarray, np.ndarray], write_csv: Callable[..., Path]
) -> None:
    y = breast_cancer[1][:20].copy()
    y[0] = 2
    reply = app(train_message(), context(write_csv(breast_cancer[0][:20], y)))
    assert reply.has_error()
    assert "UnknownLabelError" in reply.error.reason and "'2'" in reply.error.reason


def test_bad_run_config_is_an_error_reply(site_csv: Path) -> None:
    reply = app(train_message(), context(site_csv, update_encoding="int4"))
    assert reply.has_error()
    assert "'update-encoding': expected one of 'float32', 'fp16', 'int8'" in reply.error.reason


def test_weights_unchanged_by_evaluate(site_csv: Path) -> None:
    model = build_model(RunSettings())
    before = get_weights(model)
    app(evaluate_message(ArrayRecord(model.state_dict())), context(site_csv))
    for name, value in get_weights(model).items():
        np.testing.assert_array_equal(value, before[name])


def test_small_cnn_trains_on_digit_images(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    path = tmp_path / "digits.npz"
    np.savez(path, x=digits.images[:200] / 16.0, y=digits.target[:200])  # (n, 8, 8)
    run_config: dict[str, UserConfigValue] = {
        "model": "small-cnn",
        "input-shape": "1,8,8",
        "labels": ",".join(str(d) for d in range(10)),
        "update-encoding": "fp16",
    }
    settings = RunSettings.from_run_config(run_config)
    arrays = ArrayRecord(build_model(settings).state_dict())
    reply = app(
        train_message(arrays),
        context(path, **{k.replace("-", "_"): v for k, v in run_config.items()}),
    )
    assert_only_arrays_and_metrics(reply)
    assert list(reply.content["arrays"]) == ["update.fp16"]
    assert reply.content["metrics"]["num-examples"] == 200


def test_a_bug_is_left_to_flower_not_answered_as_a_site_error(site_csv: Path) -> None:
    def broken(msg: Message, ctx: Context) -> Message:
        raise RuntimeError("a bug, not a site's mistake")

    # Flower answers it with its own error reply and logs the traceback.
    with pytest.raises(RuntimeError, match="a bug"):
        error_reply_mod(train_message(), context(site_csv), broken)


def test_errors_from_handlers_and_mods_alike_are_answered_by_the_outermost_mod(
    site_csv: Path, tmp_path: Path
) -> None:
    from federated.client_app import evaluate_handler, train_handler
    from federated.errors import SettingsError, SiteDataMissingError

    arrays = ArrayRecord(build_model(RunSettings()).state_dict())
    # The handlers raise; they do not reply with errors themselves.
    with pytest.raises(SiteDataMissingError):
        train_handler(train_message(), context(tmp_path / "gone.csv"))
    with pytest.raises(SiteDataMissingError):
        evaluate_handler(evaluate_message(arrays), context(tmp_path / "gone.csv"))
    with pytest.raises(SettingsError):
        update_encoding_mod(train_message(), context(site_csv, update_encoding="int4"), app)
