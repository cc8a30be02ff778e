"""Messages as Flower's runtime hands them to a ClientApp, for in-process tests."""

from __future__ import annotations

import time

from flwr.app import Message, Metadata, RecordDict


def incoming(
    content: RecordDict, message_type: str, node_id: int = 7, group_id: str = "1"
) -> Message:
    """A message as the SuperNode hands it to the ClientApp (ids set by the SuperLink)."""
    metadata = Metadata(
        run_id=1,
        message_id=f"msg-{time.monotonic_ns()}",
        src_node_id=1,
        dst_node_id=node_id,
        reply_to_message_id="",
        group_id=group_id,
        created_at=time.time(),
        ttl=600.0,
        message_type=message_type,
    )
    return Message(content=content, metadata=metadata)
