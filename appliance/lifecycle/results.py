"""What lifecycle operations return, and what ``appliance status`` reports: plain data.

The admin servicer turns these into protobuf (``appliance.admin._convert``); the core
never sees a message. ``ModelFigures`` and ``DaemonFigures`` are what monitoring adds to
the status when it runs (request rate, latency percentiles, drift, cache counters),
through the hooks ``Daemon.model_figures`` and ``Daemon.daemon_figures``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict


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


class ModelFigures(TypedDict, total=False):
    request_rate: float  # requests per second, recent
    latency_p50_ms: float
    latency_p99_ms: float
    drift_psi: dict[str, float]  # feature or output name -> population stability index
    drift_state: str  # ok, warn, alert


class DaemonFigures(TypedDict, total=False):
    cache_hits: int
    cache_misses: int


ModelFiguresHook = Callable[[str], ModelFigures]
DaemonFiguresHook = Callable[[], DaemonFigures]


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
    "DaemonFiguresHook",
    "DaemonStatus",
    "ModelFigures",
    "ModelFiguresHook",
    "ModelListing",
    "ModelStatus",
    "PushResult",
    "SwitchResult",
    "VersionListing",
]
