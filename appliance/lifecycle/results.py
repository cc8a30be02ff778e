"""What lifecycle operations return, and what ``appliance status`` reports: plain data.

The admin servicer turns these into protobuf (``appliance.admin._convert``); the core
never sees a message. ``ModelFigures`` and ``DaemonFigures`` are what monitoring adds to
the status when it runs (request rate, latency percentiles, drift, cache counters): a
``FiguresSource`` (``appliance.monitoring.Monitoring``) gives them to ``collect_status``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class PushResult:
    name: str
    version: int
    digest: str
    activated: bool
    previous_version: int | None
    seconds: float


@dataclass(frozen=True)
class SwitchResult:
    """An activation or a rollback: what serves now, what served before."""

    name: str
    version: int
    previous_version: int | None
    seconds: float


@dataclass(frozen=True)
class VersionListing:
    version: int
    on_disk: bool
    loaded: bool
    active: bool
    digest: str = ""
    installed_at: str = ""


@dataclass(frozen=True)
class ModelListing:
    name: str
    active_version: int | None
    highest_activated: int
    rollback_versions: tuple[int, ...]  # most recent first
    versions: tuple[VersionListing, ...]


@dataclass(frozen=True)
class ModelFigures:
    """What ``appliance status`` shows of a model's traffic; zero when not measured."""

    request_rate: float = 0.0  # requests per second, recent
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    drift_psi: dict[str, float] = field(default_factory=dict)  # feature -> PSI
    drift_state: str = ""  # ok, warn, alert; empty when not measured
    generative: bool = False  # a text-generation model: the token figures apply
    tokens_per_s: float = 0.0  # generated tokens per second, recent
    ttft_p50_ms: float = 0.0  # time to first token
    ttft_p99_ms: float = 0.0


@dataclass(frozen=True)
class DaemonFigures:
    cache_hits: int = 0
    cache_misses: int = 0


class FiguresSource(Protocol):
    """Who measures the figures (``appliance.monitoring.Monitoring``)."""

    def model_figures(self, name: str, active: int | None) -> ModelFigures: ...
    def daemon_figures(self) -> DaemonFigures: ...


@dataclass(frozen=True)
class ModelStatus:
    name: str
    active_version: int | None
    versions_on_disk: tuple[int, ...]
    versions_loaded: tuple[int, ...]
    state: str
    figures: ModelFigures = field(default_factory=ModelFigures)


@dataclass(frozen=True)
class DaemonStatus:
    state: str
    execution_providers: tuple[str, ...]
    server_version: str
    uptime_s: float
    models: tuple[ModelStatus, ...]
    figures: DaemonFigures = field(default_factory=DaemonFigures)


__all__ = [
    "DaemonFigures",
    "DaemonStatus",
    "FiguresSource",
    "ModelFigures",
    "ModelListing",
    "ModelStatus",
    "PushResult",
    "SwitchResult",
    "VersionListing",
]
