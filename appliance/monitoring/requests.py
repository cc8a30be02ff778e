"""One inference request's outcome, recorded once: request metrics and model statistics.

``RequestRecorder`` is what every transport calls when an inference request ends
(``inference``): the gRPC observer layer (``appliance.servicers._observer``) for
ModelInfer and each ModelStreamInfer message, the HTTP front door for its infer routes.
It takes plain values (model, version asked for, version that answered, status name,
seconds) and updates the request metrics (``Monitoring.record_request``) and the served
version's V2 statistics (``LoadedModel.stats``); the request log (``log``) is its
neighbour, one line per request. Serving code records nothing itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.logs import RequestLog

if TYPE_CHECKING:
    from appliance.manager import ModelManager
    from appliance.monitoring.monitor import Monitoring


class RequestRecorder:
    def __init__(
        self, manager: ModelManager, monitoring: Monitoring | None, log: RequestLog
    ) -> None:
        self._manager = manager
        self._monitoring = monitoring if monitoring is not None and monitoring.enabled else None
        self.log = log

    def inference(
        self, model: str, version: str, status: str, seconds: float, served: str = ""
    ) -> None:
        """One inference request ended. ``version``: the one asked for ("" for the
        default); ``served``: the one that answered, when one did."""
        if not served:
            # Not answered: counted against the version that would answer it.
            default = self._manager.default_version(model)
            served = version or ("" if default is None else str(default))
        if self._monitoring is not None:
            self._monitoring.record_request(model, served, status, seconds)
        loaded = self._manager.find(model, served)
        if loaded is not None:
            loaded.stats.record_request(status == "OK", int(seconds * 1e9))


__all__ = ["RequestRecorder"]
