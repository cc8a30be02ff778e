"""The appliance's error tree: every failure a user can meet, and the status it maps to.

Core modules raise these and know nothing of gRPC; ``appliance.servicers._boundary``
turns them into gRPC status codes in one place, looked up by ``status``. Messages
say what was expected and what arrived, and never carry tensor contents.

The project's three error roots (``ApplianceError`` here, ``compress.errors.CompressError``
and ``federated.errors.FederatedError``) share one shape, ``StatusError``: each class
carries a ``Status``, and ``EXIT_CODES`` maps a status to the exit code of the
``appliance`` command that met it, so one table serves the gRPC boundary and the CLI.

    ApplianceError                      INTERNAL
    ├── ConfigError                     INVALID_ARGUMENT  (bad config file or flag)
    ├── ModelNotFoundError              NOT_FOUND         (unknown model or version)
    ├── InvalidInputError               INVALID_ARGUMENT  (shape, dtype, size, names)
    ├── QueueFullError                  RESOURCE_EXHAUSTED
    ├── NotReadyError                   UNAVAILABLE       (loading, draining, unloaded)
    ├── DeadlineExceededError           DEADLINE_EXCEEDED
    ├── UnauthenticatedError            UNAUTHENTICATED
    ├── PermissionDeniedError           PERMISSION_DENIED
    ├── ModelLoadError                  FAILED_PRECONDITION (model file unusable)
    ├── PackageError                    FAILED_PRECONDITION (malformed package)
    │   └── SignatureError              FAILED_PRECONDITION (unsigned, tampered, untrusted)
    ├── SelfTestError                   FAILED_PRECONDITION (golden outputs off on this box)
    ├── DowngradeError                  FAILED_PRECONDITION (version below highest activated)
    ├── VersionExistsError              ALREADY_EXISTS    (that version is already installed)
    ├── VersionInUseError               FAILED_PRECONDITION (removing the active version)
    └── InferenceError                  INTERNAL          (ONNX Runtime failed at run time)
"""

from __future__ import annotations

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


class NotReadyError(_ClientError):
    status = Status.UNAVAILABLE


class DeadlineExceededError(_ClientError):
    status = Status.DEADLINE_EXCEEDED


class UnauthenticatedError(_ClientError):
    status = Status.UNAUTHENTICATED


class PermissionDeniedError(_ClientError):
    status = Status.PERMISSION_DENIED


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


__all__ = [
    "EXIT_CODES",
    "ApplianceError",
    "ConfigError",
    "DeadlineExceededError",
    "DowngradeError",
    "InferenceError",
    "InvalidInputError",
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
    "UnauthenticatedError",
    "VersionExistsError",
    "VersionInUseError",
]
