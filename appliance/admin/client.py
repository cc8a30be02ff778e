"""The admin client the CLI uses: one blocking call per command, errors made ours.

``AdminClient`` reaches the daemon on its Unix socket (a path) or on TCP with mTLS
(``host:port`` with a client certificate). A failed call becomes the ``ApplianceError``
subclass of its status code, carrying the server's message, so the CLI's one error
boundary turns it into an exit code. Uploads stream the package in 1 MiB chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc

from appliance._proto import admin_pb2 as pb
from appliance._proto import admin_pb2_grpc as pb_grpc
from appliance.errors import (
    ApplianceError,
    ConfigError,
    DeadlineExceededError,
    InvalidInputError,
    ModelNotFoundError,
    NotReadyError,
    PackageError,
    PermissionDeniedError,
    QueueFullError,
    UnauthenticatedError,
    VersionExistsError,
)

CHUNK_BYTES = 1024 * 1024
Response = TypeVar("Response")

# FAILED_PRECONDITION covers refused packages, failed self-tests and downgrades alike.
_ERROR_BY_CODE: dict[str, type[ApplianceError]] = {
    cls.status.value: cls
    for cls in (
        InvalidInputError,
        ModelNotFoundError,
        VersionExistsError,
        QueueFullError,
        PackageError,
        NotReadyError,
        DeadlineExceededError,
        UnauthenticatedError,
        PermissionDeniedError,
    )
}


@dataclass(frozen=True)
class AdminTarget:
    """Where the admin service is: a Unix socket path, or ``host:port`` with mTLS files."""

    address: str
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    @property
    def is_socket(self) -> bool:
        return "/" in self.address or not self.address.rpartition(":")[2].isdigit()

    def channel(self) -> grpc.Channel:
        if self.is_socket:
            return grpc.insecure_channel(f"unix:{Path(self.address).absolute()}")
        if self.cert is None or self.key is None or self.ca is None:
            raise ConfigError(
                f"admin address {self.address!r} is TCP, which is mutual TLS only: expected "
                "--tls-cert, --tls-key and --tls-ca, got "
                f"{', '.join(n for n, v in self._tls_files() if v) or 'none of them'}"
            )
        try:
            creds = grpc.ssl_channel_credentials(
                self.ca.read_bytes(), self.key.read_bytes(), self.cert.read_bytes()
            )
        except OSError as exc:
            raise ConfigError(f"could not read {exc.filename}: {exc.strerror}") from exc
        return grpc.secure_channel(self.address, creds)

    def _tls_files(self) -> list[tuple[str, Path | None]]:
        return [("--tls-cert", self.cert), ("--tls-key", self.key), ("--tls-ca", self.ca)]


class AdminClient:
    def __init__(self, target: AdminTarget, timeout: float = 600.0):
        self.target = target
        self.timeout = timeout
        self._channel = target.channel()
        self._stub = pb_grpc.AdminStub(self._channel)  # type: ignore[no-untyped-call]

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._channel.close()

    def push(
        self,
        package: Path,
        *,
        activate: bool = False,
        allow_downgrade: bool = False,
        on_progress: Callable[[int], None] | None = None,
    ) -> pb.UploadResponse:
        try:
            size = package.stat().st_size
        except OSError as exc:
            raise ModelNotFoundError(f"package {package}: {exc.strerror}") from exc
        header = pb.UploadHeader(
            filename=package.name,
            total_size=size,
            activate=activate,
            allow_downgrade=allow_downgrade,
        )
        requests = _upload_requests(package, header, on_progress)
        return self._call(self._stub.Upload, requests, pb.UploadResponse)

    def list(self, name: str = "") -> pb.ListResponse:
        return self._call(self._stub.List, pb.ListRequest(name=name), pb.ListResponse)

    def activate(
        self, name: str, version: int, allow_downgrade: bool = False
    ) -> pb.ActivateResponse:
        request = pb.ActivateRequest(name=name, version=version, allow_downgrade=allow_downgrade)
        return self._call(self._stub.Activate, request, pb.ActivateResponse)

    def rollback(self, name: str) -> pb.ActivateResponse:
        return self._call(self._stub.Rollback, pb.RollbackRequest(name=name), pb.ActivateResponse)

    def remove(self, name: str, version: int) -> pb.RemoveResponse:
        request = pb.RemoveRequest(name=name, version=version)
        return self._call(self._stub.Remove, request, pb.RemoveResponse)

    def status(self) -> pb.StatusResponse:
        return self._call(self._stub.Status, pb.StatusRequest(), pb.StatusResponse)

    def evaluate(self, name: str, version: int = 0) -> pb.EvaluateResponse:
        request = pb.EvaluateRequest(name=name, version=version)
        return self._call(self._stub.Evaluate, request, pb.EvaluateResponse)

    def shadow(
        self, name: str, version: int = 0, sample: float = 1.0, stop: bool = False
    ) -> pb.ShadowResponse:
        request = pb.ShadowRequest(name=name, version=version, sample=sample, stop=stop)
        return self._call(self._stub.Shadow, request, pb.ShadowResponse)

    def shadows(self) -> pb.ListShadowsResponse:
        return self._call(self._stub.ListShadows, pb.ListShadowsRequest(), pb.ListShadowsResponse)

    def _call(self, method: Callable[..., Any], request: Any, expected: type[Response]) -> Response:
        try:
            response = method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        if not isinstance(response, expected):
            raise ApplianceError(
                f"admin service answered {type(response).__name__}, expected {expected.__name__}"
            )
        return response

    def _error(self, exc: grpc.RpcError) -> ApplianceError:
        code: grpc.StatusCode = exc.code()
        details = str(exc.details() or code.name)
        if code is grpc.StatusCode.UNAVAILABLE:
            details = f"could not reach the admin service at {self.target.address}: {details}"
        return _ERROR_BY_CODE.get(code.name, ApplianceError)(details)


def _upload_requests(
    package: Path, header: pb.UploadHeader, on_progress: Callable[[int], None] | None
) -> Iterator[pb.UploadRequest]:
    yield pb.UploadRequest(header=header)
    with package.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            yield pb.UploadRequest(chunk=chunk)
            if on_progress is not None:
                on_progress(len(chunk))


__all__ = ["AdminClient", "AdminTarget"]
