"""The daemon: its parts wired together, and its lifecycle (start, serve, drain, stop).

Owns the order of things: choose execution providers, recover the repository, open the
metrics port, load models, open the inference port, say ready, open the admin service;
on SIGTERM, say not serving, close the admin service, stop taking RPCs, let in-flight
ones finish within the grace period, drain the batchers, exit. And the inference port's
layers, outermost first (``appliance.servicers``): the error boundary, the observer
(request log, metrics, statistics), the gate (identity and role), the limits (RPCs in
flight, streams). The parts themselves live in their modules.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from appliance import __version__
from appliance._proto import grpc_service_pb2 as pb
from appliance._proto import grpc_service_pb2_grpc as pb_grpc
from appliance.admin import AdminServer
from appliance.audit import AuditLog
from appliance.config import Config, ServerConfig
from appliance.errors import ConfigError
from appliance.generative import ServedGenerative
from appliance.http import HttpServer
from appliance.lifecycle import (
    DaemonStatus,
    Lifecycle,
    ServingPolicy,
    StateStore,
    collect_status,
    recover,
)
from appliance.limits import PROBE_RESERVE
from appliance.logs import RequestLog
from appliance.manager import ModelManager
from appliance.monitoring import Monitoring, RequestRecorder
from appliance.repository import Repository
from appliance.runtime import ProviderChoice, choose_providers
from appliance.security import (
    Authenticator,
    CertificateFiles,
    Gate,
    Gatekeeper,
    HandshakeAudit,
    required_role,
)
from appliance.servicers import ErrorBoundary, InferenceServicer, WrappingInterceptor
from appliance.servicers._limits import Limits
from appliance.servicers._observer import Observer
from appliance.systemd import Notifier

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
        # -- HTTP port (appliance.http): KServe V2 REST and the OpenAI API ----------
        self._http: HttpServer | None = None
        self.http_port: int | None = None
        self._health = HealthServicer()
        self._stop = asyncio.Event()
        self._stopped = asyncio.Event()
        self.monitoring = Monitoring(config)
        self._started_at = time.monotonic()
        self.lifecycle: Lifecycle | None = None
        self._admin: AdminServer | None = None
        #: The request path's transport-neutral parts, made with the server (``_layers``).
        self.gatekeeper: Gatekeeper | None = None
        self.recorder: RequestRecorder | None = None
        self.limits: Limits | None = None
        self.notifier = Notifier()
        self.audit = AuditLog(config.lifecycle.audit_log)
        # Both check their part of the config: a bad one stops the start before any
        # model is loaded.
        self.authenticator = Authenticator(config)
        tls = config.server.tls
        self._certificates = CertificateFiles(tls) if tls is not None else None
        if tls is not None:  # the admin TLS port audits its own handshakes
            logging.getLogger("grpc").addHandler(HandshakeAudit(self.audit))

    async def start(self) -> None:
        self.providers = choose_providers(
            self.config.runtime.providers or None,
            gpu_fp16=self.config.runtime.gpu_fp16,
            cache_dir=self.config.repository.path / ".trt-cache",
        )
        log.info(self.providers.describe())
        state = StateStore(self.config.repository.path)
        # Before anything loads (and before the roots are chosen: undoing an interrupted
        # first push may leave the repository empty): clean up, settle active versions.
        recover(self.config.repository.path, state, self.audit)
        # The state record decides what serves; every folder is verified as it loads.
        policy = ServingPolicy(
            state,
            self.audit,
            repository=self.config.repository.path,
            trusted_keys=self.config.signing.trusted_keys,
            require_signed=self.config.signing.require_signed,
        )
        roots = policy.roots(self.config.repository.serve_default_model)
        self.manager = ModelManager(
            Repository(roots), self.config, self.providers, policy, monitoring=self.monitoring
        )
        self.lifecycle = Lifecycle(
            self.manager,
            state,
            self.audit,
            repository=self.config.repository.path,
            trusted_keys=self.config.signing.trusted_keys,
            keep_versions=self.config.lifecycle.keep_versions,
            grace_s=self.config.server.grace_period_s,
            max_package_bytes=self.config.lifecycle.max_package_bytes,
            upload_idle_timeout_s=self.config.lifecycle.upload_idle_timeout_s,
        )
        # One recorder of request outcomes for both ports.
        self.recorder = RequestRecorder(
            self.manager, self.monitoring, RequestLog(self.config.logging.requests)
        )
        # HTTP: its auth and TLS settings are checked here, before any model loads.
        self._http = HttpServer(
            self.config,
            self.manager,
            lambda: self.state is DaemonState.READY,
            self.audit,
            recorder=self.recorder,
            generative=ServedGenerative(self.manager),
        )
        self.monitoring.start()  # a taken metrics port stops the start here
        await self.manager.load_all()
        self._server = self._build_server(self.manager)
        self.port = self._bind(self._server)
        await self._server.start()
        self.http_port = await self._http.start()
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self._start_admin(self.lifecycle)
        self.state = DaemonState.READY
        served = ", ".join(f"{m.name}:{m.version}" for m in self.manager.loaded()) or "none"
        server = self.config.server
        log.info("serving on %s (port %d); models: %s", server.address, self.port, served)
        self.notifier.ready(
            f"serving {served} on {server.address}, HTTP {server.http_address} "
            f"({self.providers.primary}; auth {'on' if self.authenticator.required else 'off'})"
        )
        self.notifier.start_watchdog()

    async def _start_admin(self, lifecycle: Lifecycle) -> None:
        admin = AdminServer(
            self.config.admin,
            lifecycle,
            self.status,
            authenticator=self.authenticator,
            audit=self.audit,
        )
        try:
            await admin.start()
        except ConfigError as exc:
            if self.config.admin.model_fields_set & {"socket", "address"}:
                raise  # configured: an operator relies on it
            # Developer mode (no config): /run/appliance may not be ours to create.
            log.warning("admin service not started: %s; serving without it", exc)
            return
        self._admin = admin

    def status(self) -> DaemonStatus:
        """What ``appliance status`` shows."""
        if self.manager is None or self.providers is None:
            raise ConfigError("the daemon has not started")
        return collect_status(
            self.manager,
            state=self.state.value,
            providers=self.providers.names,
            server_version=__version__,
            uptime_s=time.monotonic() - self._started_at,
            figures=self.monitoring,
        )

    def _layers(self, manager: ModelManager) -> WrappingInterceptor:
        """The inference port's layers, over the transport-neutral parts the daemon keeps
        (``gatekeeper``, ``recorder``, ``limits``) for any other front door to share."""
        server = self.config.server
        if self.recorder is None:
            self.recorder = RequestRecorder(
                manager, self.monitoring, RequestLog(self.config.logging.requests)
            )
        self.gatekeeper = Gatekeeper(
            self.authenticator.identify,
            self.audit,
            required=self.authenticator.required,
            repository_control=server.repository_control,
        )
        self.limits = Limits.of(server)
        return WrappingInterceptor(
            [
                ErrorBoundary(defer_parse_errors=True),
                Observer(self.recorder, quiet=lambda path: required_role(path) is None),
                Gate(self.gatekeeper),
                self.limits,
            ]
        )

    def _build_server(self, manager: ModelManager) -> grpc.aio.Server:
        limit = self.config.server.max_message_bytes
        server = grpc.aio.server(
            interceptors=[self._layers(manager)],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                # Two daemons must not silently share a port.
                ("grpc.so_reuseport", 0),
                *_connection_options(self.config.server),
            ],
            # The limits layer refuses past max_concurrent_rpcs, except probes: they
            # alone may use the reserve, so a box at its limit still answers them.
            maximum_concurrent_rpcs=self.config.server.max_concurrent_rpcs + PROBE_RESERVE,
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            InferenceServicer(manager, lambda: self.state is DaemonState.READY),
            server,
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
        try:
            if self._certificates is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, self._certificates.credentials())
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
        self.notifier.stopping("draining: finishing in-flight requests")
        grace = self.config.server.grace_period_s
        log.info("draining: finishing in-flight requests (grace %.1f s)", grace)
        await self._health.enter_graceful_shutdown()
        if self._admin is not None:
            await self._admin.stop(grace)
        # Both ports drain at once, each giving its in-flight requests the grace period.
        await asyncio.gather(
            self._server.stop(grace) if self._server is not None else asyncio.sleep(0),
            self._http.stop() if self._http is not None else asyncio.sleep(0),
        )
        if self.manager is not None:
            await self.manager.close(grace)
        self.monitoring.close()
        await self.notifier.stop_watchdog()
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


def _connection_options(server: ServerConfig) -> list[tuple[str, int]]:
    """Keepalive enforcement and connection age, from ``[server]`` (gRPC channel args)."""

    def ms(seconds: float) -> int:
        return int(seconds * 1000)

    options = [
        ("grpc.keepalive_time_ms", ms(server.keepalive_time_s)),
        ("grpc.keepalive_timeout_ms", ms(server.keepalive_timeout_s)),
        # Idle clients may ping, but not more often than min_client_ping_interval_s;
        # a client that does is sent GOAWAY after two strikes (gRPC's default).
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", ms(server.min_client_ping_interval_s)),
    ]
    if server.max_connection_age_s > 0:
        options += [
            ("grpc.max_connection_age_ms", ms(server.max_connection_age_s)),
            ("grpc.max_connection_age_grace_ms", ms(server.max_connection_age_grace_s)),
        ]
    return options


__all__ = ["Daemon", "DaemonState"]
