"""The daemon: its parts wired together, and its lifecycle (start, serve, drain, stop).

Owns the order of things: choose execution providers, load models, open the port, say
ready; on SIGTERM, say not serving, stop taking RPCs, let in-flight ones finish within
the grace period, drain the batchers, exit. The parts themselves live in their modules.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from pathlib import Path

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from appliance._proto import grpc_service_pb2 as pb
from appliance._proto import grpc_service_pb2_grpc as pb_grpc
from appliance.config import Config
from appliance.errors import ConfigError
from appliance.manager import ModelManager
from appliance.repository import Repository, repository_roots
from appliance.runtime import ProviderChoice, choose_providers
from appliance.servicers import ErrorBoundary, InferenceServicer

log = logging.getLogger(__name__)


class DaemonState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"


class Daemon:
    """One serving process. ``await start()``, then ``await wait_stopped()``."""

    def __init__(self, config: Config):
        self.config = config
        self.state = DaemonState.STARTING
        self.providers: ProviderChoice | None = None
        self.manager: ModelManager | None = None
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._health = HealthServicer()
        self._stop = asyncio.Event()
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        self.providers = choose_providers(
            self.config.runtime.providers or None,
            gpu_fp16=self.config.runtime.gpu_fp16,
            cache_dir=self.config.repository.path / ".trt-cache",
        )
        log.info(self.providers.describe())
        roots = repository_roots(
            self.config.repository.path, self.config.repository.serve_default_model
        )
        self.manager = ModelManager(Repository(roots), self.config, self.providers)
        await self.manager.load_all()
        self._server = self._build_server(self.manager)
        self.port = self._bind(self._server)
        await self._server.start()
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        self.state = DaemonState.READY
        served = ", ".join(f"{m.name}:{m.version}" for m in self.manager.loaded()) or "none"
        log.info(
            "serving on %s (port %d); models: %s", self.config.server.address, self.port, served
        )

    def _build_server(self, manager: ModelManager) -> grpc.aio.Server:
        limit = self.config.server.max_message_bytes
        server = grpc.aio.server(
            interceptors=[ErrorBoundary()],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                # Two daemons must not silently share a port.
                ("grpc.so_reuseport", 0),
            ],
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            InferenceServicer(manager, lambda: self.state is DaemonState.READY), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        services = (
            pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(services, server, pool=_reflection_pool())
        return server

    def _bind(self, server: grpc.aio.Server) -> int:
        address = self.config.server.address
        tls = self.config.server.tls
        try:
            if tls is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(
                    address, _server_credentials(tls.cert, tls.key, tls.client_ca)
                )
        except RuntimeError as exc:
            raise ConfigError(f"server.address {address!r}: could not listen: {exc}") from exc
        if port == 0:
            raise ConfigError(f"server.address {address!r}: could not listen (port in use?)")
        return int(port)

    def request_stop(self) -> None:
        """Signal handler side: begin the drain (idempotent)."""
        self._stop.set()

    async def run_until_stopped(self) -> None:
        await self._stop.wait()
        await self.drain()

    async def drain(self) -> None:
        if self.state in (DaemonState.DRAINING, DaemonState.STOPPED):
            await self._stopped.wait()
            return
        self.state = DaemonState.DRAINING
        grace = self.config.server.grace_period_s
        log.info("draining: finishing in-flight requests (grace %.1f s)", grace)
        await self._health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace)
        if self.manager is not None:
            await self.manager.close(grace)
        self.state = DaemonState.STOPPED
        self._stopped.set()
        log.info("stopped")


def _reflection_pool() -> DescriptorPool:
    """Our V2 descriptors live in a pool of their own (see protos/generate.py); give
    reflection that pool with the health service's descriptors added."""
    pool: DescriptorPool = pb.POOL
    for file in (health_pb2.DESCRIPTOR,):
        try:
            pool.FindFileByName(file.name)
        except KeyError:
            pool.AddSerializedFile(file.serialized_pb)
    return pool


def _server_credentials(cert: Path, key: Path, client_ca: Path | None) -> grpc.ServerCredentials:
    try:
        pair = (key.read_bytes(), cert.read_bytes())
        ca = client_ca.read_bytes() if client_ca else None
    except OSError as exc:
        raise ConfigError(f"server.tls: could not read {exc.filename}: {exc.strerror}") from exc
    return grpc.ssl_server_credentials(
        [pair], root_certificates=ca, require_client_auth=ca is not None
    )


__all__ = ["Daemon", "DaemonState"]
