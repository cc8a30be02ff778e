"""The ClientApp's mods: a site's errors become error replies, and train replies are
encoded.

``error_reply_mod`` is the outermost mod: a ``FederatedError`` raised anywhere inside
(a handler, another mod, flwr's SecAgg+ stages) becomes the error reply here, in one
place, logged in one line without a traceback. The server logs the reason and the
round goes on with the other sites. Anything else is a bug, left to Flower, which
answers with its own error reply and logs the traceback.

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
from federated.errors import FederatedError
from federated.protocol import ARRAYS_KEY
from federated.settings import Encoding, RunSettings


def error_reply_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Answer a ``FederatedError`` from inside with an error reply naming it."""
    try:
        return call_next(msg, context)
    except FederatedError as exc:
        return error_reply(msg, exc)


def update_encoding_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Encode the weights in a train reply as the run's update encoding."""
    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, context)
    encoding = RunSettings.from_run_config(context.run_config).update_encoding
    if encoding is Encoding.FLOAT32:
        return call_next(msg, context)
    global_arrays = to_numpy(msg.content.array_records[ARRAYS_KEY])
    reply = call_next(msg, context)
    local_arrays = to_numpy(reply.content.array_records[ARRAYS_KEY])
    reply.content[ARRAYS_KEY] = to_record(encode_update(global_arrays, local_arrays, encoding))
    return reply


__all__ = ["error_reply_mod", "update_encoding_mod"]
