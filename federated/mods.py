"""The ClientApp side of update compression: a Flower mod that encodes train replies.

``update_encoding_mod`` wraps the train handler: it keeps the global weights that came
in, lets training run, and replaces the reply's float32 weights with the encoded update
(``federated.encoding``) that run config ``update-encoding`` asks for. Its server-side
partner is ``federated.strategy.SiteUpdates``, which decodes before aggregation.
Evaluate and query messages pass through untouched.
"""

from __future__ import annotations

from flwr.app import Context, Message, MessageType
from flwr.clientapp.typing import ClientAppCallable

from federated._records import error_reply, to_numpy, to_record
from federated.encoding import encode_update
from federated.errors import SettingsError
from federated.protocol import ARRAYS_KEY
from federated.settings import Encoding, RunSettings


def update_encoding_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Encode the weights in a train reply as the run's update encoding."""
    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, context)
    try:
        encoding = RunSettings.from_run_config(context.run_config).update_encoding
    except SettingsError as exc:
        return error_reply(msg, exc)
    if encoding is Encoding.FLOAT32:
        return call_next(msg, context)
    global_arrays = to_numpy(msg.content.array_records[ARRAYS_KEY])
    reply = call_next(msg, context)
    if reply.has_error():
        return reply
    local_arrays = to_numpy(reply.content.array_records[ARRAYS_KEY])
    reply.content[ARRAYS_KEY] = to_record(encode_update(global_arrays, local_arrays, encoding))
    return reply


__all__ = ["update_encoding_mod"]
