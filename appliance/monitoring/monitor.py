"""The daemon's monitoring: per-model hooks, the ``/metrics`` endpoint, status figures.

Owns what ties metrics and drift to the serving core. The daemon makes one
``Monitoring``; the model manager asks it for a ``ModelMonitor`` for each version it
loads (``attach``), which the model feeds per batch from its worker thread; the request
recorder (``requests``) reports each request's status code and time
(``record_request``); the admin Status RPC reads ``model_figures`` and
``daemon_figures``; the response caches' counters are read from the models. The HTTP
endpoint is prometheus-client's own server on a daemon thread, over this daemon's
registry.

Label values are bounded whatever clients send: a model name that is not loaded reads
``model="_unknown"`` and a version that is not loaded reads ``version=""``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from appliance.batcher import BatchRecord
from appliance.config import Config
from appliance.errors import ConfigError
from appliance.lifecycle.results import DaemonFigures, ModelFigures
from appliance.manager import version_number
from appliance.monitoring.drift import DriftMonitor, DriftSettings
from appliance.monitoring.metrics import (
    BatchMetrics,
    GenerationMetrics,
    GpuCollector,
    ProcessCollector,
    RequestMetrics,
    merge_families,
)

if TYPE_CHECKING:
    from appliance.cache import ResponseCache
    from appliance.model import LoadedModel

log = logging.getLogger(__name__)

UNKNOWN_MODEL = "_unknown"
#: Every state a model version can be in, as ``appliance_model_state`` enumerates them.
_STATES = ("LOADING", "READY", "UNLOADING", "UNAVAILABLE", "FAILED")


class _Served(Protocol):
    """What monitoring reads of a loaded model (``appliance.model.LoadedModel``)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def cache(self) -> ResponseCache | None: ...


class ModelMonitor:
    """One loaded version's hooks: batch metrics and drift statistics."""

    def __init__(self, model: LoadedModel, drift: DriftMonitor | None):
        self.model = model
        self.drift = drift
        self.batches = BatchMetrics()
        self.labels = (model.name, str(model.version))

    def record_batch(self, record: BatchRecord) -> None:
        """Worker thread, once per session run."""
        self.batches.record(record)
        if self.drift is not None and record.ok and record.inputs is not None:
            self.drift.observe(record.rows, record.inputs, record.outputs or {})


class Monitoring:
    """Metrics registry and endpoint, drift settings, caches: one per daemon."""

    def __init__(self, config: Config):
        self.config = config
        self.enabled = config.monitoring.enabled
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = RequestMetrics()
        self.port: int | None = None
        self._monitors: dict[tuple[str, int], ModelMonitor] = {}
        self._generative: dict[tuple[str, int], GenerationMetrics] = {}
        self._cascades: dict[str, int] = {}  # [cascades.NAME] -> the one version it answers at
        # Replaced whole under the lock, read without it on the event loop.
        self._names: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._server: WSGIServer | None = None
        self._gpu: GpuCollector | None = None
        self._retired_hits = 0
        self._retired_misses = 0

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Register the collectors and open the ``/metrics`` port (when enabled)."""
        if not self.enabled:
            return
        self.registry.register(_ModelsCollector(self))
        self.registry.register(ProcessCollector())
        self._gpu = GpuCollector.create()
        if self._gpu is not None:
            self.registry.register(self._gpu)
        address = self.config.server.metrics_address
        host, _, port = address.rpartition(":")
        try:
            self._server, _ = start_http_server(int(port), host.strip("[]"), self.registry)
        except OSError as exc:
            raise ConfigError(
                f"server.metrics_address {address!r}: could not listen: {exc.strerror}"
            ) from exc
        self.port = int(self._server.server_port)
        log.info("metrics on http://%s:%d/metrics", host, self.port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._gpu is not None:
            self._gpu.close()
            self._gpu = None

    # -- models ----------------------------------------------------------------

    def attach(self, model: LoadedModel) -> ModelMonitor | None:
        """Hooks for a version just loaded; None when monitoring is off."""
        if not self.enabled:
            return None
        drift = None
        if model.manifest is not None and model.manifest.reference_profile:
            settings = self.config.monitoring
            drift = DriftMonitor(
                model.name,
                model.version,
                model.manifest.reference_profile,
                DriftSettings(
                    warn=settings.drift_warn,
                    alert=settings.drift_threshold,
                    min_rows=settings.drift_min_rows,
                    window_rows=settings.drift_window_rows,
                ),
            )
        monitor = ModelMonitor(model, drift)
        with self._lock:
            self._monitors[(model.name, model.version)] = monitor
            self._refresh_names()
        return monitor

    def attach_generative(self, name: str, version: int) -> GenerationMetrics | None:
        """Token and sequence metrics for a generative version about to load."""
        if not self.enabled:
            return None
        metrics = GenerationMetrics()
        with self._lock:
            self._generative[(name, version)] = metrics
            self._refresh_names()
        return metrics

    def serve_cascades(self, versions: Mapping[str, int]) -> None:
        """The cascades served under names of their own, with the version each answers
        at: their requests count under those names, not as ``UNKNOWN_MODEL`` (each
        stage's own count is ``appliance_cascade_requests_total``)."""
        with self._lock:
            self._cascades = dict(versions)
            self._refresh_names()

    def _refresh_names(self) -> None:
        """Under the lock: the names ``record_request`` counts under their own label."""
        loaded = (name for name, _ in (*self._monitors, *self._generative))
        self._names = frozenset((*loaded, *self._cascades))

    def detach(self, model: _Served) -> None:
        """A version was retired: its gauges go; its cache counts stay in the totals."""
        with self._lock:
            self._monitors.pop((model.name, model.version), None)
            self._generative.pop((model.name, model.version), None)
            self._refresh_names()
            if model.cache is not None:
                self._retired_hits += model.cache.hits
                self._retired_misses += model.cache.misses

    def monitors(self) -> list[ModelMonitor]:
        with self._lock:
            return [self._monitors[k] for k in sorted(self._monitors)]

    def generative(self) -> list[tuple[tuple[str, int], GenerationMetrics]]:
        with self._lock:
            return sorted(self._generative.items())

    # -- requests --------------------------------------------------------------

    def record_request(self, model: str, version: str, code: str, seconds: float) -> None:
        """Event loop, once per inference request, whatever its outcome."""
        if not self.enabled:
            return
        known = self._known_version(model, version)
        if known is None:
            model, version = UNKNOWN_MODEL, ""
        elif not known:
            version = ""
        self.requests.record(model, version, code, seconds)

    def _known_version(self, model: str, version: str) -> bool | None:
        """None: model not loaded; False: loaded, but not at that version."""
        if model not in self._names:
            return None
        number = version_number(version)
        key = (model, number)
        if number is None:
            return False
        return (
            key in self._monitors or key in self._generative or self._cascades.get(model) == number
        )

    # -- status ----------------------------------------------------------------

    def figures(self, name: str, version: int) -> ModelFigures:
        """Recent request rate, latency quantiles and drift of one loaded version."""
        recent = self.requests.recent(name, str(version))
        with self._lock:
            monitor = self._monitors.get((name, version))
            generation = self._generative.get((name, version))
        drift = monitor.drift if monitor is not None else None
        scores = drift.psi() if drift is not None else {}
        tokens = generation.recent() if generation is not None else None
        return ModelFigures(
            request_rate=recent.request_rate,
            latency_p50_ms=recent.latency_p50_ms,
            latency_p99_ms=recent.latency_p99_ms,
            drift_psi=scores,
            drift_state=drift.state(scores).value if drift is not None else "",
            tokens_per_s=tokens.tokens_per_s if tokens else 0.0,
            ttft_p50_ms=tokens.ttft_p50_ms if tokens else 0.0,
            ttft_p99_ms=tokens.ttft_p99_ms if tokens else 0.0,
            generative=generation is not None,
        )

    def model_figures(self, name: str, active: int | None) -> ModelFigures:
        """A model at a glance: request rate over all its versions; latency and drift of
        the version that answers unversioned requests (``active``)."""
        with self._lock:
            versions = [v for n, v in (*self._monitors, *self._generative) if n == name]
        rate = sum(self.requests.recent(name, str(v)).request_rate for v in versions)
        if active is None:
            return ModelFigures(request_rate=rate)
        figures = self.figures(name, active)
        return ModelFigures(
            request_rate=rate,
            latency_p50_ms=figures.latency_p50_ms,
            latency_p99_ms=figures.latency_p99_ms,
            drift_psi=figures.drift_psi,
            drift_state=figures.drift_state,
            tokens_per_s=figures.tokens_per_s,
            ttft_p50_ms=figures.ttft_p50_ms,
            ttft_p99_ms=figures.ttft_p99_ms,
            generative=figures.generative,
        )

    def daemon_figures(self) -> DaemonFigures:
        """Response cache hits and misses since start, over every model version."""
        hits, misses = self._retired_hits, self._retired_misses
        for monitor in self.monitors():
            cache = monitor.model.cache
            if cache is not None:
                hits += cache.hits
                misses += cache.misses
        return DaemonFigures(cache_hits=hits, cache_misses=misses)


class _ModelsCollector:
    """Families read from the models at scrape time (another thread than the loop)."""

    def __init__(self, monitoring: Monitoring):
        self._monitoring = monitoring

    def collect(self) -> Iterator[Metric]:
        monitors = self._monitoring.monitors()
        yield from self._monitoring.requests.families()
        yield from merge_families(
            family
            for m in monitors
            for family in m.batches.families(("model", "version"), m.labels)
        )
        yield from _model_families(monitors)
        yield from _drift_families(monitors)
        yield from _cache_families(monitors)
        yield from merge_families(
            family
            for (name, version), metrics in self._monitoring.generative()
            for family in metrics.families((name, str(version)))
        )


def _model_families(monitors: list[ModelMonitor]) -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "appliance_queue_depth",
        "Requests waiting in a model's queue (not yet running).",
        labels=["model", "version"],
    )
    state = GaugeMetricFamily(
        "appliance_model_state",
        "1 for the state a loaded model version is in, 0 for the others.",
        labels=["model", "version", "state"],
    )
    ready = 0
    for monitor in monitors:
        model = monitor.model
        depth.add_metric(list(monitor.labels), float(model.batcher.depth))
        for name in _STATES:
            state.add_metric([*monitor.labels, name], float(model.state.value == name))
        ready += model.ready
    loaded = GaugeMetricFamily(
        "appliance_models_loaded", "Model versions loaded and ready to serve.", value=ready
    )
    yield from (depth, state, loaded)


def _drift_families(monitors: list[ModelMonitor]) -> Iterator[Metric]:
    psi = GaugeMetricFamily(
        "appliance_drift_psi",
        "Population stability index of a feature or output statistic against the "
        "package's reference profile (recent rows).",
        labels=["model", "version", "feature"],
    )
    alert = GaugeMetricFamily(
        "appliance_drift_alert",
        "1 when some PSI of the model version is at or above monitoring.drift_threshold.",
        labels=["model", "version"],
    )
    rows = CounterMetricFamily(
        "appliance_drift_rows",
        "Rows counted into the drift statistics.",
        labels=["model", "version"],
    )
    for monitor in monitors:
        if monitor.drift is None or not monitor.drift.measured:
            continue
        scores = monitor.drift.psi()
        for feature, value in scores.items():
            psi.add_metric([*monitor.labels, feature], value)
        state = monitor.drift.state(scores).value
        alert.add_metric(list(monitor.labels), float(state == "alert"))
        rows.add_metric(list(monitor.labels), float(monitor.drift.rows_total))
    yield from (psi, alert, rows)


def _cache_families(monitors: list[ModelMonitor]) -> Iterator[Metric]:
    labels = ["model", "version"]
    hits = CounterMetricFamily("appliance_cache_hits", "Response cache hits.", labels=labels)
    misses = CounterMetricFamily("appliance_cache_misses", "Response cache misses.", labels=labels)
    size = GaugeMetricFamily(
        "appliance_cache_size_bytes", "Bytes the response cache holds.", labels=labels
    )
    entries = GaugeMetricFamily(
        "appliance_cache_entries", "Responses the response cache holds.", labels=labels
    )
    for monitor in monitors:
        cache = monitor.model.cache
        if cache is None:
            continue
        values: list[Any] = list(monitor.labels)
        hits.add_metric(values, float(cache.hits))
        misses.add_metric(values, float(cache.misses))
        size.add_metric(values, float(cache.size))
        entries.add_metric(values, float(len(cache)))
    yield from (hits, misses, size, entries)


__all__ = ["UNKNOWN_MODEL", "ModelMonitor", "Monitoring"]
