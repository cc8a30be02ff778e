"""The site half of SecAgg+: a ClientApp mod around flwr's ``secaggplus_mod``.

``secaggplus_mod`` runs the protocol's four stages (key setup, key sharing, masked
update, unmasking) from the SuperNode's per-run state; only the masked stage trains.
There the legacy ``FitIns`` becomes the train message every other run uses, so DP-SGD
and the privacy ledger work unchanged, and the reply becomes a ``FitRes`` carrying the
update (local - global) that ``secaggplus_mod`` then quantizes and masks.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import (
    Code,
    FitRes,
    Scalar,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.compat.common import recorddict_compat as compat
from numpy.typing import NDArray

from federated._records import named_arrays, to_numpy, to_record
from federated._training import build_model
from federated.protocol import ARRAYS_KEY, CONFIG_KEY, METRICS_KEY, WEIGHT_KEY
from federated.secure_aggregation import CLIPPING_RANGE
from federated.settings import RunSettings

_log = logging.getLogger("federated.site")


def secure_aggregation_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Hand SecAgg+ train messages to flwr's ``secaggplus_mod``; pass all others through."""
    if (
        msg.metadata.message_type != MessageType.TRAIN
        or RECORD_KEY_CONFIGS not in msg.content.config_records
    ):
        return call_next(msg, context)

    def train_as_update(fit_msg: Message, ctxt: Context) -> Message:
        return _train_as_update(fit_msg, ctxt, call_next)

    return secaggplus_mod(msg, context, train_as_update)


def _train_as_update(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Run the Message-API train handler on a legacy ``FitIns``; answer the update as ``FitRes``."""
    settings = RunSettings.from_run_config(context.run_config)
    fit_ins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    global_arrays = named_arrays(parameters_to_ndarrays(fit_ins.parameters), _state_names(settings))
    msg.content = RecordDict(
        {ARRAYS_KEY: to_record(global_arrays), CONFIG_KEY: ConfigRecord(dict(fit_ins.config))}
    )
    # A site's error is raised through secaggplus_mod (whose masked stage has no error
    # reply) to the ClientApp's outermost mod, which answers it; the round drops the site.
    reply = call_next(msg, context)
    local_arrays = to_numpy(reply.content.array_records[ARRAYS_KEY])
    metrics = reply.content.metric_records[METRICS_KEY]
    update = [
        local_arrays[name].astype(np.float64) - global_arrays[name].astype(np.float64)
        for name in global_arrays
    ]
    num_examples = int(cast(float, metrics[WEIGHT_KEY]))
    _warn_if_clipped(update, num_examples, settings)
    fit_res = FitRes(
        status=Status(Code.OK, "trained"),
        parameters=ndarrays_to_parameters(update),
        num_examples=num_examples,
        metrics={name: cast(Scalar, value) for name, value in metrics.items()},
    )
    return Message(compat.fitres_to_recorddict(fit_res, keep_input=True), reply_to=msg)


def _warn_if_clipped(update: list[NDArray[Any]], num_examples: int, settings: RunSettings) -> None:
    """Say so when SecAgg+ will clip this update: its scaled size exceeds the quantizer's range.

    ``secaggplus_mod`` scales the update by ``num_examples / secagg-max-weight`` and clips
    to ``[-CLIPPING_RANGE, CLIPPING_RANGE]`` without a word.
    """
    scaled = max(float(np.abs(u).max(initial=0.0)) for u in update)
    scaled *= num_examples / settings.secagg_max_weight
    if scaled > CLIPPING_RANGE:
        _log.warning(
            "SecAgg+ will clip this round's update: largest scaled value %.3g, range ±%g "
            "(lower learning-rate or local-epochs, or check secagg-max-weight)",
            scaled,
            CLIPPING_RANGE,
        )


def _state_names(settings: RunSettings) -> list[str]:
    """The model's state names, in the order the server's legacy ``Parameters`` use."""
    return list(build_model(settings).state_dict())


__all__ = ["secure_aggregation_mod"]
