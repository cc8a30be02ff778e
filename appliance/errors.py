"""The appliance's error tree: every failure a user can meet, and the status it maps to.

Core modules raise these and know nothing of gRPC; the error boundary
(``appliance.servicers._boundary``) turns them into gRPC status codes in one place,
looked up by ``status``, and every other place that needs an outcome's name (the request
log, metrics, audit records) asks ``status_name``. Messages say what was expected and
what arrived; they never carry tensor contents, and client-supplied names in them are
cut (``appliance.clip``).

The project's three error roots (``ApplianceError`` here, ``compress.errors.CompressError``
and ``federated.errors.FederatedError``) share one shape, ``StatusError``: each class
carries a ``Status``, and ``EXIT_CODES`` maps a status to the exit code of the
``appliance`` command that met it, so one table serves the gRPC boundary and the CLI.

    ApplianceError                      INTERNAL
    ├── ConfigError                     INVALID_ARGUMENT  (bad config file or flag)
    ├── ModelNotFoundError              NOT_FOUND         (unknown model or version)
    ├── InvalidInputError               INVALID_ARGUMENT  (shape, dtype, size, names)
    ├── QueueFullError                  RESOURCE_EXHAUSTED
    │   └── LimitError                  RESOURCE_EXHAUSTED (streams or RPCs over a cap)
    ├── NotReadyError                   UNAVAILABLE       (loading, draining, unloaded)
    ├── DeadlineExceededError           DEADLINE_EXCEEDED
    │   └── StreamIdleError             DEADLINE_EXCEEDED (a stream idle past its timeout)
    ├── UnauthenticatedError            UNAUTHENTICATED
    ├── PermissionDeniedError           PERMISSION_DENIED
    ├── DisabledError                   FAILED_PRECONDITION (a feature this box has off)
    ├── ModelLoadError                  FAILED_PRECONDITION (model file unusable)
    ├── PackageError                    FAILED_PRECONDITION (malformed package)
    │   └── SignatureError              FAILED_PRECONDITION (unsigned, tampered, untrusted)
    ├── SelfTestError                   FAILED_PRECONDITION (golden outputs off on this box)
    ├── DowngradeError                  FAILED_PRECONDITION (version below highest activated)
    ├── EvaluationGateError             FAILED_PRECONDITION (worse than the serving version here)
    ├── VersionExistsError              ALREADY_EXISTS    (that version is already installed)
    ├── VersionInUseError               FAILED_PRECONDITION (removing the active version)
    ├── StorageError                    FAILED_PRECONDITION (repository cannot be written)
    │   └── StorageFullError            RESOURCE_EXHAUSTED (its file system is full)
    └── InferenceError                  INTERNAL          (ONNX Runtime failed at run time)
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping
from typing import ClassVar


class Status(enum.Enum):
    """gRPC status names, kept here so the core does not import grpc."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    INTERNAL = "INTERNAL"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self]


#: Exit codes of every ``appliance`` command by status, stable for operators' scripts
#: (the README's table). 0 is success.
EXIT_CODES: Mapping[Status, int] = {
    # 1: internal error (a bug: report it with the log)
    Status.INTERNAL: 1,
    # 2: bad usage, bad config or bad input
    Status.INVALID_ARGUMENT: 2,
    # 3: refused: unsigned, tampered, untrusted, hostile or malformed, failing its
    #    self-test, a downgrade, a version already installed or in use, a repository
    #    that cannot be written; no variant within budget
    Status.FAILED_PRECONDITION: 3,
    Status.ALREADY_EXISTS: 3,
    # 4: not found: no such model, version or file
    Status.NOT_FOUND: 4,
    # 5: unavailable or out of room: the daemon could not be reached or is not ready,
    #    a deadline passed or an upload stalled, a full queue or a full repository disk
    #    (scripts retry on 5, not on 3)
    Status.UNAVAILABLE: 5,
    Status.DEADLINE_EXCEEDED: 5,
    Status.RESOURCE_EXHAUSTED: 5,
    # 6: permission: unauthenticated or not allowed
    Status.UNAUTHENTICATED: 6,
    Status.PERMISSION_DENIED: 6,
}


class StatusError(Exception):
    """The shape of every error root in the project: a status, and its exit code."""

    status: ClassVar[Status] = Status.INTERNAL

    @property
    def exit_code(self) -> int:
        """What the ``appliance`` command exits with when this error ends it."""
        return self.status.exit_code


class ApplianceError(StatusError):
    """Root of every error the appliance raises on purpose."""

    #: A client's mistake is logged in one line; anything else with a traceback.
    client_error: bool = False


class _ClientError(ApplianceError):
    client_error = True


class ConfigError(_ClientError):
    status = Status.INVALID_ARGUMENT


class ModelNotFoundError(_ClientError):
    status = Status.NOT_FOUND


class InvalidInputError(_ClientError):
    status = Status.INVALID_ARGUMENT


class QueueFullError(_ClientError):
    status = Status.RESOURCE_EXHAUSTED


class LimitError(QueueFullError):
    """Over a cap on streams or RPCs in flight (per connection, per peer, in all)."""


class NotReadyError(_ClientError):
    status = Status.UNAVAILABLE


class DeadlineExceededError(_ClientError):
    status = Status.DEADLINE_EXCEEDED


class StreamIdleError(DeadlineExceededError):
    """A stream that carried nothing either way for longer than its idle timeout."""


class UnauthenticatedError(_ClientError):
    status = Status.UNAUTHENTICATED


class PermissionDeniedError(_ClientError):
    status = Status.PERMISSION_DENIED


class DisabledError(_ClientError):
    """A feature this box has turned off (the message names the key that turns it on)."""

    status = Status.FAILED_PRECONDITION


class ModelLoadError(ApplianceError):
    status = Status.FAILED_PRECONDITION


class PackageError(_ClientError):
    status = Status.FAILED_PRECONDITION


class SignatureError(PackageError):
    pass


class SelfTestError(_ClientError):
    status = Status.FAILED_PRECONDITION


class DowngradeError(_ClientError):
    status = Status.FAILED_PRECONDITION


class EvaluationGateError(_ClientError):
    """A candidate scores worse on the site's evaluation data than the budget allows."""

    status = Status.FAILED_PRECONDITION


class VersionExistsError(_ClientError):
    status = Status.ALREADY_EXISTS


class VersionInUseError(_ClientError):
    status = Status.FAILED_PRECONDITION


class StorageError(ApplianceError):
    """The repository cannot be written: read-only, no permission, not a folder."""

    status = Status.FAILED_PRECONDITION


class StorageFullError(StorageError):
    """The repository's file system is full (or over quota)."""

    status = Status.RESOURCE_EXHAUSTED


class InferenceError(ApplianceError):
    status = Status.INTERNAL


def status_name(exc: BaseException) -> str:
    """The gRPC status name a failure ends in: the one vocabulary for outcomes.

    Ours carry their status; a cancelled call (the client went away, or a stream was
    closed while its handler waited) is ``CANCELLED``; anything else is a bug and ends
    ``INTERNAL`` at the error boundary.
    """
    if isinstance(exc, StatusError):
        return exc.status.value
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    return "INTERNAL"


__all__ = [
    "EXIT_CODES",
    "ApplianceError",
    "ConfigError",
    "DeadlineExceededError",
    "DisabledError",
    "DowngradeError",
    "EvaluationGateError",
    "InferenceError",
    "InvalidInputError",
    "LimitError",
    "ModelLoadError",
    "ModelNotFoundError",
    "NotReadyError",
    "PackageError",
    "PermissionDeniedError",
    "QueueFullError",
    "SelfTestError",
    "SignatureError",
    "StorageError",
    "StorageFullError",
    "Status",
    "StatusError",
    "StreamIdleError",
    "UnauthenticatedError",
    "VersionExistsError",
    "VersionInUseError",
    "status_name",
]
