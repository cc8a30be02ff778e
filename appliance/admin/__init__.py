"""The admin service: ``appliance.admin.v1.Admin`` over the lifecycle, and its client.

``AdminServer`` serves it (Unix socket, mode 0660, or TCP with mTLS), ``AdminServicer``
is the thin RPC layer, ``AdminClient`` is what ``appliance models`` and
``appliance status`` use. The server side is imported on first use, so the CLI's
client does not pay for the lifecycle's imports (ONNX Runtime, model signing).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from appliance.admin.client import AdminClient, AdminTarget

if TYPE_CHECKING:
    from appliance.admin.server import AdminServer
    from appliance.admin.servicer import AdminServicer

_LAZY = {"AdminServer": "appliance.admin.server", "AdminServicer": "appliance.admin.servicer"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'appliance.admin' has no attribute {name!r}")


__all__ = ["AdminClient", "AdminServer", "AdminServicer", "AdminTarget"]
