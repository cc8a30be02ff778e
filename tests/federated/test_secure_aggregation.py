"""SecAgg+ in process: flwr's real legacy workflow and protocol, our real ClientApp.

Only the transport is replaced (``SitesGrid``). The unmasked result must equal plain
FedAvg of the very same local training (up to SecAgg+'s quantization), weighting sites
by their example counts; a site that fails in the masked stage must be dropped and its
masks still removed; and what sites sent must be key material, masked vectors and
metrics, never an update the server could read.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from compress.models import TabularMLP
from federated._records import to_numpy
from federated._training import build_model
from federated.client_app import app
from federated.errors import NotEnoughSitesError, SettingsError
from federated.secure_aggregation.server import run_secure_rounds
from federated.settings import RunSettings, UserConfigValue
from federated.strategy import ReplyAudit, build_strategy
from tests.federated._grid import SitesGrid
from tests.federated._messages import incoming

SIZES = (120, 180, 240)  # unequal, so weighting by examples is visible
# What a SecAgg+ reply may name: protocol fields, the FitRes status and our train metrics.
SECAGG_FIELDS = {"pk1", "pk2", "dsts", "ctxts", "masked_params", "nids", "shares"}
REPLY_FIELDS = SECAGG_FIELDS | {"code", "message", "train-loss", "num-examples", "steps"}


@pytest.fixture(autouse=True)
def serverapp_identity() -> Iterator[None]:
    """The ids Flower sets in a ServerApp process, which server-side messages carry."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    yield
    TaskIdentity._run_id = TaskIdentity._node_id = TaskIdentity._task_id = None


@pytest.fixture
def initial(breast_cancer: tuple[np.ndarray, np.ndarray]) -> ArrayRecord:
    return initial_model(breast_cancer[0])


@pytest.fixture
def site_files(
    breast_cancer: tuple[np.ndarray, np.ndarray], write_csv: Callable[..., Path]
) -> list[Path]:
    x, y = breast_cancer
    bounds = np.cumsum((0, *SIZES))
    return [
        write_csv(x[a:b], y[a:b], name=f"site{i}.csv")
        for i, (a, b) in enumerate(itertools.pairwise(bounds))
    ]


def run_config(**values: UserConfigValue) -> dict[str, UserConfigValue]:
    config: dict[str, UserConfigValue] = {"secure-aggregation": True, "min-available-nodes": 3}
    config.update({k.replace("_", "-"): v for k, v in values.items()})
    return config


def site_context(node_id: int, data: Path, config: dict[str, UserConfigValue]) -> Context:
    return Context(1, node_id, {"data-path": str(data)}, RecordDict(), config)


def initial_model(x: np.ndarray) -> ArrayRecord:
    """The untrained model, standardised as the server's round 0 would leave it."""
    model = build_model(RunSettings())
    assert isinstance(model, TabularMLP)
    model.set_standardization(torch.from_numpy(x.mean(0)), torch.from_numpy(x.std(0)))
    return ArrayRecord(model.state_dict())


def run_secure(
    files: list[Path], initial: ArrayRecord, config: dict[str, UserConfigValue]
) -> tuple[ArrayRecord, dict[int, dict[str, float]], ReplyAudit]:
    settings = RunSettings.from_run_config(config)
    grid = SitesGrid({10 + i: site_context(10 + i, f, config) for i, f in enumerate(files)})
    audit = ReplyAudit()
    server = Context(1, 0, {}, RecordDict(), config)
    result = run_secure_rounds(
        grid, server, settings, initial, evaluation=build_strategy(settings, audit), audit=audit
    )
    metrics = {r: dict(m) for r, m in result.train_metrics_clientapp.items()}
    return result.arrays, metrics, audit


def local_training(
    files: list[Path], initial: ArrayRecord, config: dict[str, UserConfigValue]
) -> tuple[list[dict[str, np.ndarray]], list[float]]:
    """One round of ordinary training at the same sites: their weights and example counts."""
    weights, counts = [], []
    for i, data in enumerate(files):
        content = RecordDict({"arrays": initial, "config": ConfigRecord({"server-round": 1})})
        reply = app(
            incoming(content, MessageType.TRAIN, 10 + i), site_context(10 + i, data, config)
        )
        weights.append(to_numpy(reply.content["arrays"]))
        counts.append(float(reply.content["metrics"]["num-examples"]))
    return weights, counts


def mean(weights: list[dict[str, np.ndarray]], counts: list[float]) -> dict[str, np.ndarray]:
    share = np.asarray(counts) / sum(counts)
    return {
        name: sum(s * w[name] for s, w in zip(share, weights, strict=True)) for name in weights[0]
    }


def plain_fedavg(
    files: list[Path], initial: ArrayRecord, config: dict[str, UserConfigValue]
) -> dict[str, np.ndarray]:
    return mean(*local_training(files, initial, config))


def assert_close(actual: ArrayRecord, expected: dict[str, np.ndarray]) -> None:
    got = to_numpy(actual)
    assert list(got) == list(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, atol=1e-4, err_msg=name)


def test_unmasked_result_is_fedavg_of_the_same_local_training(
    site_files: list[Path], initial: ArrayRecord
) -> None:
    config = run_config(num_server_rounds=1)
    arrays, metrics, _ = run_secure(site_files, initial, config)
    weights, counts = local_training(site_files, initial, config)
    expected = mean(weights, counts)
    assert_close(arrays, expected)
    # The tolerance is fine enough to tell weighting by examples from equal weights.
    unweighted = mean(weights, [1.0] * len(counts))
    assert max(float(np.abs(expected[n] - unweighted[n]).max()) for n in expected) > 1e-3
    assert metrics[1]["num-examples"] == sum(SIZES)
    assert metrics[1]["uplink-bytes"] > 0


def test_a_site_failing_in_the_masked_stage_is_dropped_and_masks_still_cancel(
    site_files: list[Path], initial: ArrayRecord, tmp_path: Path
) -> None:
    # The third site gets through key setup and sharing, then has no data to train on.
    files = [*site_files[:2], tmp_path / "gone.csv"]
    config = run_config(num_server_rounds=1)
    arrays, metrics, _ = run_secure(files, initial, config)
    assert metrics[1]["num-examples"] == SIZES[0] + SIZES[1]
    assert_close(arrays, plain_fedavg(site_files[:2], initial, config))


def test_a_site_error_in_the_masked_stage_is_an_error_reply_logged_in_one_line(
    site_files: list[Path], initial: ArrayRecord, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = [*site_files[:2], tmp_path / "gone.csv"]
    config = run_config(num_server_rounds=1)
    settings = RunSettings.from_run_config(config)
    grid = SitesGrid({10 + i: site_context(10 + i, f, config) for i, f in enumerate(files)})
    audit = ReplyAudit()
    server = Context(1, 0, {}, RecordDict(), config)
    with caplog.at_level(logging.ERROR, logger="federated.site"):
        run_secure_rounds(
            grid, server, settings, initial, evaluation=build_strategy(settings, audit), audit=audit
        )
    # The ClientApp answered the error itself (its outermost mod); nothing escaped it.
    assert grid.raised == []
    lines = [r.getMessage() for r in caplog.records if r.name == "federated.site"]
    assert lines, "the site logged nothing"
    for line in lines:
        assert line.startswith("SiteDataMissingError (NOT_FOUND): site data not found at ")
        assert "gone.csv" in line and "\n" not in line


def test_a_round_below_the_reconstruction_threshold_fails_the_run_clearly(
    site_files: list[Path], initial: ArrayRecord, tmp_path: Path
) -> None:
    # Two of three sites fail after sharing keys: one masked vector cannot be unmasked.
    files = [site_files[0], tmp_path / "gone1.csv", tmp_path / "gone2.csv"]
    with pytest.raises(NotEnoughSitesError, match="expected at least one SecAgg\\+ round"):
        run_secure(files, initial, run_config(num_server_rounds=1))


def test_sites_send_keys_masked_vectors_and_metrics_only(
    site_files: list[Path], initial: ArrayRecord
) -> None:
    _, _, audit = run_secure(site_files, initial, run_config(num_server_rounds=1))
    train = [r for r in audit.replies if r.phase == "train"]
    assert len(train) == 4 * 3  # four SecAgg+ stages, three sites
    for reply in train:
        assert set(reply.config_names) <= REPLY_FIELDS, reply
        assert reply.array_names == [], reply  # the update itself never leaves unmasked
    masked = [r for r in train if "masked_params" in r.config_names]
    assert len(masked) == 3


def test_client_dp_composes_with_secure_aggregation(
    site_files: list[Path], initial: ArrayRecord
) -> None:
    config = run_config(num_server_rounds=2, privacy="client", dp_target_epsilon=8.0)
    _, metrics, _ = run_secure(site_files, initial, config)
    assert 0 < metrics[1]["dp-epsilon-total"] < metrics[2]["dp-epsilon-total"] <= 8.0


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("aggregation", "median", "aggregation 'fedavg'"),
        ("update-encoding", "int8", "update-encoding 'float32'"),
        ("privacy", "server", "privacy 'none' or 'client'"),
    ],
)
def test_options_that_need_individual_updates_are_refused(key: str, value: str, named: str) -> None:
    with pytest.raises(SettingsError, match="'secure-aggregation'") as caught:
        RunSettings.from_run_config({"secure-aggregation": True, key: value})
    assert named in str(caught.value)
