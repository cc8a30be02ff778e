"""Exit codes of the ``appliance`` command, stable for operators' scripts.

0  success
1  internal error (a bug: please report it with the log)
2  bad usage, bad config or bad input
3  refused: package unsigned, tampered, untrusted, failing its self-test, or a downgrade
4  not found: no such model, version or file
5  unavailable: the daemon could not be reached or is not ready
6  permission: unauthenticated or not allowed
"""

from __future__ import annotations

from appliance.errors import ApplianceError, Status

_BY_STATUS = {
    Status.INVALID_ARGUMENT: 2,
    Status.FAILED_PRECONDITION: 3,
    Status.ALREADY_EXISTS: 3,
    Status.NOT_FOUND: 4,
    Status.UNAVAILABLE: 5,
    Status.DEADLINE_EXCEEDED: 5,
    Status.RESOURCE_EXHAUSTED: 5,
    Status.UNAUTHENTICATED: 6,
    Status.PERMISSION_DENIED: 6,
}


def exit_code_for(exc: ApplianceError) -> int:
    return _BY_STATUS.get(exc.status, 1)
