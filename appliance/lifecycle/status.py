"""``appliance status``: the daemon's state, providers and models, plus monitoring figures.

Reads the model manager and asks monitoring (a ``FiguresSource``) for its figures; if
that fails it is logged and the figures left at zero, since status must answer even
when monitoring is broken.
"""

from __future__ import annotations

import logging

from appliance.lifecycle.results import (
    DaemonFigures,
    DaemonStatus,
    FiguresSource,
    ModelFigures,
    ModelStatus,
)
from appliance.manager import ModelManager

log = logging.getLogger(__name__)


def collect_status(
    manager: ModelManager,
    *,
    state: str,
    providers: tuple[str, ...],
    server_version: str,
    uptime_s: float,
    figures: FiguresSource | None = None,
) -> DaemonStatus:
    on_disk = manager.repository.models()
    loaded: dict[str, list[int]] = {}
    for model in manager.loaded():
        loaded.setdefault(model.name, []).append(model.version)
    models = tuple(
        ModelStatus(
            name=name,
            active_version=manager.default_version(name),
            versions_on_disk=tuple(sorted(on_disk.get(name, {}))),
            versions_loaded=tuple(sorted(loaded.get(name, []))),
            state=_model_state(manager, name),
            figures=_model_figures(figures, name, manager.default_version(name)),
        )
        for name in sorted(set(on_disk) | set(loaded))
    )
    return DaemonStatus(
        state=state,
        execution_providers=providers,
        server_version=server_version,
        uptime_s=uptime_s,
        models=models,
        figures=_daemon_figures(figures),
    )


def _model_state(manager: ModelManager, name: str) -> str:
    version = manager.default_version(name)
    for model in manager.loaded():
        if model.name == name and model.version == version:
            return model.state.value
    return "UNAVAILABLE"


def _model_figures(source: FiguresSource | None, name: str, active: int | None) -> ModelFigures:
    if source is None:
        return ModelFigures()
    try:
        return source.model_figures(name, active)
    except Exception:
        log.exception("status: monitoring figures for model %r failed", name)
        return ModelFigures()


def _daemon_figures(source: FiguresSource | None) -> DaemonFigures:
    if source is None:
        return DaemonFigures()
    try:
        return source.daemon_figures()
    except Exception:
        log.exception("status: monitoring figures for the daemon failed")
        return DaemonFigures()


__all__ = ["collect_status"]
