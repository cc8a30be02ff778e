"""The HTTP port's lifecycle: listen in the daemon's own event loop, drain on SIGTERM.

Owns binding ``server.http_address`` (TLS from ``[server.tls]``), and stopping: the
listening socket closes, idle keep-alive connections are closed, requests in flight get
``server.grace_period_s`` to finish. aiohttp runs embedded (``AppRunner`` without signal
handlers: SIGTERM stays the daemon's), with handler cancellation on, so a client that
disconnects cancels its request. Authentication on this port is decided for its own
address: ``auth.enabled = "auto"`` turns it on when ``http_address`` is reachable from
other hosts, whatever the gRPC port's address.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from appliance.audit import AuditLog
from appliance.config import Config
from appliance.errors import ConfigError
from appliance.http._tls import ReloadingContext
from appliance.http.app import Gate, build_app
from appliance.http.feedback import FeedbackRoutes
from appliance.http.generative import GenerativeModels
from appliance.http.kserve import KServeRoutes
from appliance.http.openai_api import OpenAIRoutes
from appliance.logs import RequestLog
from appliance.manager import ModelManager
from appliance.monitoring import RequestRecorder
from appliance.security import Authenticator, Gatekeeper

log = logging.getLogger(__name__)

#: Seconds an idle keep-alive connection stays open (nginx's default; aiohttp's is an hour).
_IDLE_KEEPALIVE_S = 75.0


def http_authenticator(config: Config) -> Authenticator:
    """The ``Authenticator`` of the HTTP port: ``auto`` judged on ``http_address``."""
    server = config.server.model_copy(update={"address": config.server.http_address})
    return Authenticator(config.model_copy(update={"server": server}))


class HttpServer:
    """``await start()`` (returns the port), ``await stop()``."""

    def __init__(
        self,
        config: Config,
        manager: ModelManager,
        is_ready: Callable[[], bool],
        audit: AuditLog,
        *,
        recorder: RequestRecorder | None = None,
        generative: GenerativeModels | None = None,
    ):
        self.config = config
        server = config.server
        self.authenticator = http_authenticator(config)  # a bad auth setup stops the start
        self._tls = ReloadingContext(server.tls) if server.tls is not None else None
        limit = server.max_message_bytes
        # The daemon's recorder, shared with the gRPC port; alone (tests), one of its own.
        if recorder is None:
            recorder = RequestRecorder(manager, None, RequestLog(config.logging.requests))
        # The gRPC port's decision and audit, with this port's authenticator.
        gatekeeper = Gatekeeper(
            self.authenticator.identify, audit, required=self.authenticator.required
        )
        gate = Gate(gatekeeper, recorder.log, server.max_concurrent_rpcs)
        routes = [
            *KServeRoutes(manager, is_ready, recorder, limit).routes(),
            *FeedbackRoutes(manager).routes(),
            *OpenAIRoutes(manager, generative, recorder, limit).routes(),
        ]
        self._app = build_app(gate, routes, limit)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> int:
        address = self.config.server.http_address
        host, _, port = address.rpartition(":")
        runner = web.AppRunner(
            self._app,
            handle_signals=False,
            access_log=None,  # the gate writes the request log
            shutdown_timeout=self.config.server.grace_period_s,
            handler_cancellation=True,
            keepalive_timeout=_IDLE_KEEPALIVE_S,
        )
        await runner.setup()
        site = web.TCPSite(
            runner,
            host.strip("[]"),
            int(port),
            ssl_context=self._tls.context if self._tls is not None else None,
            reuse_port=False,  # two daemons must not silently share a port
        )
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"server.http_address {address!r}: could not listen: {exc.strerror or exc}"
            ) from exc
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info(
            "HTTP (KServe V2 REST, OpenAI /v1) on %s (port %d; %s; auth %s)",
            address,
            self.port,
            "TLS" if self._tls is not None else "plaintext",
            "on" if self.authenticator.required else "off",
        )
        return self.port

    async def stop(self) -> None:
        """Stop listening; in-flight requests get the grace period, then connections close."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


__all__ = ["HttpServer", "http_authenticator"]
