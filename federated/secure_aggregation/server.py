"""The server half of SecAgg+: flwr's legacy workflow with SecAgg+ as its fit step.

Each round, ``SecAggPlusWorkflow`` runs the protocol's stages through the grid and
hands ``_UpdateMean`` the unmasked weighted mean of the sites' updates, which it adds to
the global model; then the run's Message-API strategy evaluates on the sites as usual.
Every reply passes through ``_AuditedGrid`` into the run's audit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from logging import INFO, WARNING
from typing import Any, cast

import numpy as np
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.common import (
    FitIns,
    FitRes,
    NDArrays,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy
from flwr.supercore import log
from numpy.typing import NDArray

from federated._records import named_arrays, to_numpy, to_record
from federated.errors import NotEnoughSitesError
from federated.protocol import METRICS_KEY, WEIGHT_KEY
from federated.secure_aggregation import CLIPPING_RANGE
from federated.settings import RunSettings
from federated.strategy import ReplyAudit, aggregate_metrics


class _UpdateMean(LegacyFedAvg):
    """FedAvg on SecAgg+'s output: the global model plus the unmasked mean update.

    ``SecAggPlusWorkflow`` hands every site's ``FitRes`` the same parameters, the
    weighted mean of the updates; only the metrics differ per site.
    """

    def __init__(self, settings: RunSettings, initial: Mapping[str, NDArray[Any]]) -> None:
        super().__init__(
            fraction_fit=settings.fraction_train,
            fraction_evaluate=0.0,  # evaluation runs on the Message API (run_secure_rounds)
            min_fit_clients=settings.min_train_nodes,
            min_evaluate_clients=0,
            min_available_clients=settings.min_available_nodes,
            initial_parameters=ndarrays_to_parameters(list(initial.values())),
            on_fit_config_fn=lambda rnd: {
                "local-epochs": settings.local_epochs,
                "server-round": rnd,
            },
        )
        self.names = list(initial)
        self.train_metrics: dict[int, MetricRecord] = {}
        self._global: NDArrays = list(initial.values())

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        self._global = parameters_to_ndarrays(parameters)
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if not results:
            log(
                WARNING, "Round %d: no site completed SecAgg+; the model is unchanged", server_round
            )
            return None, {}
        mean_update = parameters_to_ndarrays(results[0][1].parameters)
        if not all(np.isfinite(u).all() for u in mean_update):
            log(
                WARNING,
                "Round %d: the unmasked update is not finite; model unchanged",
                server_round,
            )
            return None, {}
        new_global = [
            _add(weights, update) for weights, update in zip(self._global, mean_update, strict=True)
        ]
        sites = [RecordDict({METRICS_KEY: _numbers(res.metrics)}) for _, res in results]
        metrics = aggregate_metrics(sites, WEIGHT_KEY)
        self.train_metrics[server_round] = metrics
        legacy: dict[str, Scalar] = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
        return ndarrays_to_parameters(new_global), legacy


def _add(weights: NDArray[Any], update: NDArray[Any]) -> NDArray[Any]:
    total = weights.astype(np.float64) + update
    integer = np.issubdtype(weights.dtype, np.integer)
    return np.asarray(np.rint(total) if integer else total, dtype=weights.dtype)


def _numbers(metrics: Mapping[str, Any]) -> MetricRecord:
    """The numeric metrics, as a record (SecAgg+ metrics travel as legacy scalars)."""
    return MetricRecord(
        {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
    )


class _AuditedGrid:
    """The run's grid, recording every SecAgg+ reply in the audit on its way through."""

    def __init__(self, grid: Grid, audit: ReplyAudit) -> None:
        self._grid = grid
        self._audit = audit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        for reply in replies:
            if reply.has_content() and reply.metadata.message_type == MessageType.TRAIN:
                self._audit.record(int(reply.metadata.group_id), "train", reply, accepted=True)
        return replies


def run_secure_rounds(
    grid: Grid,
    context: Context,
    settings: RunSettings,
    initial: ArrayRecord,
    *,
    evaluation: Strategy,
    audit: ReplyAudit,
) -> Result:
    """``num-server-rounds`` rounds of SecAgg+ training, each followed by site evaluation.

    ``evaluation`` is the run's Message-API strategy; only its evaluate half is used, and
    its ``configure_evaluate`` is handed each round's global arrays. Every SecAgg+ reply
    (keys, shares, masked vectors, metrics) goes into ``audit``.
    """
    names = list(initial)
    strategy = _UpdateMean(settings, to_numpy(initial))
    legacy = LegacyContext(
        context,
        config=ServerConfig(
            num_rounds=settings.num_server_rounds, round_timeout=settings.round_timeout
        ),
        strategy=strategy,
    )
    evaluate_metrics: dict[int, MetricRecord] = {}

    def evaluate_round(grid: Grid, ctxt: Context) -> None:
        server_round = int(
            cast(int, ctxt.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND])
        )
        if server_round not in strategy.train_metrics:
            log(
                WARNING,
                "Round %d: SecAgg+ halted (fewer sites than the reconstruction threshold "
                "took part); the global model is unchanged",
                server_round,
            )
        arrays = _global_arrays(ctxt, names)
        messages = evaluation.configure_evaluate(server_round, arrays, ConfigRecord(), grid)
        replies = grid.send_and_receive(list(messages), timeout=settings.round_timeout)
        if (metrics := evaluation.aggregate_evaluate(server_round, replies)) is not None:
            evaluate_metrics[server_round] = metrics

    workflow = DefaultWorkflow(
        fit_workflow=SecAggPlusWorkflow(
            num_shares=settings.secagg_num_shares,
            reconstruction_threshold=settings.secagg_reconstruction_threshold,
            max_weight=settings.secagg_max_weight,
            clipping_range=CLIPPING_RANGE,
            timeout=settings.round_timeout,
        ),
        evaluate_workflow=evaluate_round,
    )
    log(INFO, "Secure aggregation (SecAgg+) on: the server sees only the sum of updates")
    workflow(cast(Grid, _AuditedGrid(grid, audit)), legacy)
    if not strategy.train_metrics:
        raise NotEnoughSitesError(
            f"expected at least one SecAgg+ round to complete with "
            f"{settings.min_train_nodes}+ sites, got none in {settings.num_server_rounds}"
        )
    for server_round, metrics in strategy.train_metrics.items():
        metrics["uplink-bytes"] = audit.uplink_bytes(server_round)
    return Result(
        arrays=_global_arrays(legacy, names),
        train_metrics_clientapp=strategy.train_metrics,
        evaluate_metrics_clientapp=evaluate_metrics,
    )


def _global_arrays(context: Context, names: list[str]) -> ArrayRecord:
    parameters = compat.arrayrecord_to_parameters(
        context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True
    )
    return to_record(named_arrays(parameters_to_ndarrays(parameters), names))


__all__ = ["run_secure_rounds"]
