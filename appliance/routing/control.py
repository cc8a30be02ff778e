"""Starting and stopping shadows: the admin side of ``shadow``, audited.

``appliance models shadow NAME VERSION [--sample F]`` (the admin ``Shadow`` RPC) checks
that NAME serves and VERSION is another version on disk, loads the candidate beside the
serving version when it is not loaded yet (verified by the serving policy like any
load), and begins copying; ``--stop`` ends the shadow and unloads the candidate again if
the shadow loaded it and it has not become the default meanwhile. A new shadow of the
same model replaces the old one. Each start and stop is an audit record
(``admin.shadow``, ``admin.shadow_stop``). Not imported by the manager (the lifecycle's
audit helpers import the manager).
"""

from __future__ import annotations

import logging

from appliance.audit import AuditSink
from appliance.clip import quoted
from appliance.errors import InvalidInputError, ModelNotFoundError, NotReadyError
from appliance.lifecycle.audit import audited
from appliance.manager import ModelManager
from appliance.routing.shadow import Shadow

log = logging.getLogger(__name__)


class ShadowControl:
    def __init__(self, manager: ModelManager, audit: AuditSink, grace_s: float = 10.0):
        self._manager = manager
        self._audit = audit
        self._grace = grace_s

    def shadows(self) -> list[Shadow]:
        return self._manager.shadows.all()

    def serving_version(self, name: str) -> int | None:
        return self._manager.default_version(name)

    async def start(self, name: str, version: int, sample: float, *, who: str) -> Shadow:
        with audited(
            self._audit, "shadow", who, model=name, version=version, sample=sample
        ) as entry:
            if not 0.0 < sample <= 1.0:
                raise InvalidInputError(
                    f"--sample: expected a share of requests in (0, 1], got {sample}"
                )
            serving = self._manager.default_version(name)
            if serving is None:
                raise NotReadyError(
                    f"model {quoted(name)} has no serving version to shadow; activate one first"
                )
            if version == serving:
                raise InvalidInputError(
                    f"model {quoted(name)} version {version} is the serving version; expected "
                    "a candidate version (loaded or on disk, not the default)"
                )
            entry["serving"] = serving
            loaded_here = await self._load(name, version)
            previous = self._manager.shadows.end(name)
            if previous is not None:
                await self._release(previous)
            shadow = Shadow(name, version, sample, loaded_here)
            self._manager.shadows.begin(shadow)
            log.info(
                "model %s: shadowing version %d with %.0f%% of the requests to version %d",
                name,
                version,
                sample * 100,
                serving,
            )
            return shadow

    async def stop(self, name: str, *, who: str) -> Shadow:
        with audited(self._audit, "shadow_stop", who, model=name) as entry:
            shadow = self._manager.shadows.end(name)
            if shadow is None:
                raise ModelNotFoundError(f"model {quoted(name)} has no shadow to stop")
            entry.update(
                version=shadow.version,
                requests=shadow.requests,
                rows=shadow.rows,
                agreeing=shadow.agreeing,
                failures=shadow.failures,
            )
            await self._release(shadow)
            log.info("model %s: shadow of version %d stopped", name, shadow.version)
            return shadow

    async def _load(self, name: str, version: int) -> bool:
        """Make sure the candidate is loaded; True when it was loaded for the shadow."""
        if self._manager.find(name, str(version)) is not None:
            return False
        source = self._manager.repository.versions(name).get(version)
        if source is None:
            on_disk = sorted(self._manager.repository.versions(name))
            raise ModelNotFoundError(
                f"model {quoted(name)} has no version {version} on disk; versions on disk: "
                f"{on_disk}"
            )
        await self._manager.add_version(source)
        return True

    async def _release(self, shadow: Shadow) -> None:
        if shadow.loaded_here and self._manager.default_version(shadow.name) != shadow.version:
            await self._manager.retire(shadow.name, shadow.version, self._grace)


__all__ = ["ShadowControl"]
