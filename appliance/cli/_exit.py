"""Exit codes of the ``appliance`` command, stable for operators' scripts.

0  success
1  internal error (a bug: please report it with the log)
2  bad usage, bad config or bad input
3  refused: package unsigned, tampered, untrusted, hostile or malformed, failing its
   self-test, a downgrade, a version already installed or in use, a repository that
   cannot be written
4  not found: no such model, version or file
5  unavailable or out of room: the daemon could not be reached or is not ready, a
   deadline passed or an upload stalled, the repository's disk is full
6  permission: unauthenticated or not allowed

The README's exit-code table says the same; scripts retry on 5, not on 3.
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
    Status.RESOURCE_EXHAUSTED: 5,  # a full queue, or a full repository disk
    Status.UNAUTHENTICATED: 6,
    Status.PERMISSION_DENIED: 6,
}


def exit_code_for(exc: ApplianceError) -> int:
    return _BY_STATUS.get(exc.status, 1)
