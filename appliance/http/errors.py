"""The HTTP error boundary: our errors become HTTP statuses and bodies here, and only here.

The status is looked up by the exception's class (the nearest class of its MRO in
``HTTP_STATUS``), following the HTTP mapping of gRPC codes in google.rpc's
``code.proto``, so both ports tell a client the same thing: NOT_FOUND 404,
INVALID_ARGUMENT 400, RESOURCE_EXHAUSTED 429 (a body over ``server.max_message_bytes``
413), UNAVAILABLE 503, DEADLINE_EXCEEDED 504, UNAUTHENTICATED 401 (with
``WWW-Authenticate: Bearer``), PERMISSION_DENIED 403. Two body shapes:

- KServe V2 / Triton routes: ``{"error": "message"}`` (what ``tritonclient.http`` reads);
- OpenAI routes (``/v1``): ``{"error": {"message", "type", "param", "code"}}``.

A client's mistake is logged in one line without a traceback; anything else is a bug:
logged with its traceback under an incident id, answered 500 with that id only. The
tree of errors defined here (both are client mistakes):

    ApplianceError
    ├── MessageTooLargeError   RESOURCE_EXHAUSTED -> 413 (body over the limit)
    └── InvalidInputError
        └── FieldError         INVALID_ARGUMENT -> 400, naming the JSON field (``param``)
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Literal

from appliance import errors as core
from appliance.errors import ApplianceError, InvalidInputError, Status

log = logging.getLogger("appliance.http")

Style = Literal["v2", "openai"]


class MessageTooLargeError(ApplianceError):
    """A request body over ``server.max_message_bytes``."""

    status = Status.RESOURCE_EXHAUSTED
    client_error = True


class FieldError(InvalidInputError):
    """A JSON field that is missing, malformed or not supported; ``param`` names it."""

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}" if param else message)
        self.param = param


#: HTTP status by error class; subclasses not listed take their nearest listed base.
HTTP_STATUS: dict[type[ApplianceError], int] = {
    ApplianceError: 500,
    core.ConfigError: 400,
    core.ModelNotFoundError: 404,
    core.InvalidInputError: 400,
    core.QueueFullError: 429,
    MessageTooLargeError: 413,
    core.NotReadyError: 503,
    core.DeadlineExceededError: 504,
    core.UnauthenticatedError: 401,
    core.PermissionDeniedError: 403,
    core.DisabledError: 400,
    core.ModelLoadError: 500,
    core.PackageError: 400,
    core.SelfTestError: 400,
    core.DowngradeError: 400,
    core.EvaluationGateError: 400,
    core.VersionExistsError: 409,
    core.VersionInUseError: 400,
    core.StorageError: 500,
    core.StorageFullError: 507,
    core.InferenceError: 500,
}

#: OpenAI's error ``type`` for each status it documents (others: ``server_error``).
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}


def http_status(exc: ApplianceError) -> int:
    for cls in type(exc).__mro__:
        status = HTTP_STATUS.get(cls)
        if status is not None:
            return status
    return 500


def _body(style: Style, status: int, message: str, exc: BaseException | None) -> bytes:
    if style == "v2":
        return json.dumps({"error": message}).encode()
    code = exc.status.value.lower() if isinstance(exc, ApplianceError) else "internal"
    error = {
        "message": message,
        "type": _OPENAI_TYPES.get(status, "server_error"),
        "param": (exc.param or None) if isinstance(exc, FieldError) else None,
        "code": code,
    }
    return json.dumps({"error": error}).encode()


class ErrorAnswer:
    """What the boundary answers for one exception: status, body, headers, log status."""

    def __init__(self, exc: BaseException, route: str, style: Style):
        if isinstance(exc, ApplianceError):
            self.status = http_status(exc)
            self.code = exc.status.value
            message = str(exc)
            if exc.client_error:
                log.info("%s -> %d %s: %s", route, self.status, self.code, message)
            else:
                log.error("%s -> %d %s: %s", route, self.status, self.code, message, exc_info=exc)
        else:
            incident = uuid.uuid4().hex[:12]
            log.error("%s -> 500 INTERNAL (incident %s)", route, incident, exc_info=exc)
            self.status, self.code = 500, Status.INTERNAL.value
            message = f"internal error (incident {incident}); see the server log"
        self.body = _body(style, self.status, message, exc)
        self.headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}


__all__ = [
    "HTTP_STATUS",
    "ErrorAnswer",
    "FieldError",
    "MessageTooLargeError",
    "Style",
    "http_status",
]
