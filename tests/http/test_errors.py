"""The HTTP status of every error class: the gRPC code's HTTP mapping (google.rpc), in one
table, so the two ports tell a client the same thing."""

from __future__ import annotations

import json

import pytest

from appliance import errors
from appliance.errors import ApplianceError, Status
from appliance.http.errors import ErrorAnswer, FieldError, MessageTooLargeError, http_status

# google/rpc/code.proto: the HTTP mapping of each gRPC code.
GOOGLE = {
    Status.INVALID_ARGUMENT: 400,
    Status.FAILED_PRECONDITION: 400,
    Status.NOT_FOUND: 404,
    Status.ALREADY_EXISTS: 409,
    Status.RESOURCE_EXHAUSTED: 429,
    Status.UNAVAILABLE: 503,
    Status.DEADLINE_EXCEEDED: 504,
    Status.UNAUTHENTICATED: 401,
    Status.PERMISSION_DENIED: 403,
    Status.INTERNAL: 500,
}

CLASSES = [
    getattr(errors, name)
    for name in errors.__all__
    if isinstance(getattr(errors, name), type) and issubclass(getattr(errors, name), ApplianceError)
]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_a_client_s_mistake_gets_the_http_status_of_its_grpc_code(cls: type) -> None:
    exc = cls("message")
    if exc.client_error:
        assert http_status(exc) == GOOGLE[exc.status]
    else:  # the server's own trouble is a 5xx whatever its gRPC code
        assert 500 <= http_status(exc) < 600


def test_an_oversized_body_is_413_and_a_field_error_names_its_field() -> None:
    assert http_status(MessageTooLargeError("big")) == 413
    answer = ErrorAnswer(
        FieldError("n", "only n = 1 is supported"), "POST /v1/completions", "openai"
    )
    assert answer.status == 400
    assert json.loads(answer.body) == {
        "error": {
            "message": "n: only n = 1 is supported",
            "type": "invalid_request_error",
            "param": "n",
            "code": "invalid_argument",
        }
    }


def test_an_internal_error_answers_an_incident_id_only() -> None:
    answer = ErrorAnswer(KeyError("secret internal detail"), "POST /v2/models/{name}/infer", "v2")
    body = json.loads(answer.body)
    assert answer.status == 500 and answer.code == "INTERNAL"
    assert body["error"].startswith("internal error (incident ")
    assert "secret" not in body["error"]
