"""``POST /v2/models/{name}/feedback``: outcome reports on the HTTP port, thin over
``appliance.quality.Outcomes`` (the gRPC port's ``Feedback/Report``, as JSON).

The body is ``{"id": "...", "label": "..."}``: the id an earlier infer request carried
and its true class, as the package's labels spell it, with an optional ``"group"`` (the
case's ward, scanner or age band) that live accuracy is kept for too. The answer says which version
answered that request, whether it was right, and that version's live accuracy. Errors
are the gate's to answer, like every route's.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from appliance.errors import DisabledError, InvalidInputError
from appliance.http.app import DESCRIBED, Described, Route, read_body
from appliance.manager import ModelManager

#: A report is two short strings; anything larger is not one.
MAX_REPORT_BYTES = 64 * 1024


class FeedbackRoutes:
    def __init__(self, manager: ModelManager):
        self._manager = manager

    def routes(self) -> list[Route]:
        path = "/v2/models/{name}/feedback"
        return [Route("POST", path, self.report, f"POST {path}", "v2")]

    async def report(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        request[DESCRIBED] = Described(name)
        outcomes = self._manager.outcomes
        if outcomes is None:
            raise DisabledError("outcome feedback is not set up on this daemon")
        request_id, label, group = _parse(await read_body(request, MAX_REPORT_BYTES))
        verdict = outcomes.report(name, request_id, label, group)
        return web.json_response(
            {
                "model_name": verdict.model,
                "model_version": str(verdict.version),
                "correct": verdict.correct,
                "live_accuracy": verdict.live_accuracy,
                "reports": verdict.reports,
            }
        )


def _parse(body: bytes) -> tuple[str, str, str]:
    """(id, label, group); group "" when the body names none."""
    try:
        report: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInputError(
            'expected a JSON body {"id": "...", "label": "..."}, got one that does not parse'
        ) from None
    if not isinstance(report, dict):
        raise InvalidInputError(
            f'expected a JSON object {{"id": "...", "label": "..."}}, got {type(report).__name__}'
        )
    values = []
    for key in ("id", "label"):
        value = report.get(key)
        if not isinstance(value, str) or not value:
            raise InvalidInputError(f"{key}: expected a non-empty string")
        values.append(value)
    group = report.get("group")
    if group is None:  # absent or null: no group
        group = ""
    if not isinstance(group, str):
        raise InvalidInputError(f"group: expected a string, got {type(group).__name__}")
    return values[0], values[1], group


__all__ = ["FeedbackRoutes"]
