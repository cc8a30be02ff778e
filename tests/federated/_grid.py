"""An in-process ``Grid``: hands each message to its site's real ClientApp and back.

Stands in for the SuperLink and the SuperNodes' transport only: the ServerApp code under
test and the ClientApp run for real, each site with its own per-run ``Context`` (so
state such as SecAgg+ keys and the privacy ledger persists between messages, as in a
SuperNode). An exception out of the ClientApp becomes an error reply, as Flower's runtime
makes it, and is listed in ``raised``; a site in ``gone`` no longer answers, as if its
SuperNode had stopped.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

from flwr.app import Context, Error, Message, RecordDict
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from federated.client_app import app
from tests.federated._messages import incoming


class SitesGrid(Grid):
    def __init__(self, sites: Mapping[int, Context]) -> None:
        self.sites = dict(sites)
        self.gone: set[int] = set()
        self.raised: list[str] = []  # exceptions that escaped a ClientApp, as error reasons
        self._run = Run.create_empty(run_id=1)

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return [node for node in self.sites if node not in self.gone]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError("SitesGrid answers in send_and_receive only")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError("SitesGrid answers in send_and_receive only")

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return [self._deliver(m) for m in messages if m.metadata.dst_node_id not in self.gone]

    def _deliver(self, msg: Message) -> Message:
        node = msg.metadata.dst_node_id
        # A copy, as over the wire: the ClientApp may change what it received.
        content = copy.deepcopy(msg.content)
        delivered = incoming(content, msg.metadata.message_type, node, msg.metadata.group_id)
        try:
            reply = app(delivered, self.sites[node])
        except Exception as exc:
            error = Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, f"{type(exc).__name__}: {exc}")
            self.raised.append(error.reason)
            reply = Message(error, reply_to=delivered)
        return reply
