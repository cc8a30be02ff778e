"""Which model versions are loaded, and which one answers a request.

Owns the table of loaded versions and the per-model default version (the one an
unversioned request reaches). Loading runs in a worker thread (sessions take seconds to
build) and switching the default is a single assignment on the event loop, so a request
sees either the old or the new version, never a half-loaded one. The lifecycle
(``appliance.lifecycle``) builds staged activation and rollback on ``add_version``,
``set_default`` and ``retire``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from appliance.batcher import BatchSettings
from appliance.cache import ResponseCache
from appliance.clip import quoted
from appliance.config import Config
from appliance.errors import (
    ApplianceError,
    ModelLoadError,
    ModelNotFoundError,
    NotReadyError,
)
from appliance.model import Array, LoadedModel, ModelSpec, ModelState, RequestTensor
from appliance.repository import Repository, VersionSource
from appliance.runtime import ProviderChoice, Session

if TYPE_CHECKING:
    from appliance.monitoring import Monitoring

log = logging.getLogger(__name__)


def version_number(version: str) -> int | None:
    """A requested version as a number; None for anything that names no version (not
    digits, or more of them than any version has: Python refuses to parse 100,000)."""
    if not version.isdigit() or len(version) > 18:
        return None
    return int(version)


@dataclass(frozen=True)
class IndexEntry:
    name: str
    version: int
    state: str
    reason: str = ""


class ModelManager:
    def __init__(
        self,
        repository: Repository,
        config: Config,
        providers: ProviderChoice,
        active_version: Callable[[str], int | None] | None = None,
        monitoring: Monitoring | None = None,
    ):
        self.repository = repository
        self.monitoring = monitoring
        self.config = config
        self.providers = providers
        self._active_version = active_version or (lambda name: None)
        self._loaded: dict[str, dict[int, LoadedModel]] = {}
        self._default: dict[str, int] = {}
        self._failed: dict[tuple[str, int], str] = {}
        self._lock = asyncio.Lock()  # one load/unload/switch at a time

    # -- lookups ---------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._loaded)

    def loaded(self) -> list[LoadedModel]:
        return [m for name in sorted(self._loaded) for _, m in sorted(self._loaded[name].items())]

    def default_version(self, name: str) -> int | None:
        return self._default.get(name)

    def get(self, name: str, version: str = "") -> LoadedModel:
        """The model that answers ``name`` at ``version`` ("" for the default)."""
        versions = self._loaded.get(name)
        if not versions:
            raise self._not_loaded(name)
        if not version:
            default = self._default.get(name)
            if default is None or default not in versions:
                raise NotReadyError(f"model {quoted(name)} has no active version")
            return versions[default]
        number = version_number(version)
        if number is None or number not in versions:
            raise ModelNotFoundError(
                f"model {quoted(name)} has no loaded version {quoted(version)}; loaded versions: "
                f"{sorted(versions)}"
            )
        return versions[number]

    def find(self, name: str, version: str) -> LoadedModel | None:
        """The loaded model of that exact version (a number), or None; never raises."""
        number = version_number(version)
        return None if number is None else self._loaded.get(name, {}).get(number)

    def _not_loaded(self, name: str) -> ApplianceError:
        if name in self.repository.models():
            return NotReadyError(
                f"model {quoted(name)} is in the repository but not loaded; load it first"
            )
        known = ", ".join(self.names()) or "none"
        return ModelNotFoundError(f"no model named {quoted(name)}; serving: {known}")

    async def infer(
        self,
        name: str,
        version: str,
        tensors: Sequence[RequestTensor],
        requested_outputs: Sequence[str] = (),
        deadline: float | None = None,
    ) -> tuple[LoadedModel, dict[str, Array]]:
        """Run a request; an unversioned one that meets a version being retired retries."""
        model = self.get(name, version)
        try:
            return model, await model.infer(tensors, requested_outputs, deadline)
        except NotReadyError:
            if version:
                raise
            # The default moved to a new version between lookup and queueing.
            successor = self.get(name, version)
            if successor is model:
                raise
            return successor, await successor.infer(tensors, requested_outputs, deadline)

    def index(self) -> list[IndexEntry]:
        entries: list[IndexEntry] = []
        for name, versions in sorted(self.repository.models().items()):
            for number, source in sorted(versions.items()):
                entries.append(self._entry(name, number, source))
        return entries

    def _entry(self, name: str, version: int, source: VersionSource) -> IndexEntry:
        model = self._loaded.get(name, {}).get(version)
        if model is not None:
            return IndexEntry(name, version, model.state.value)
        reason = source.problem or self._failed.get((name, version), "")
        return IndexEntry(name, version, "UNAVAILABLE", reason or "not loaded")

    # -- loading ---------------------------------------------------------------

    async def load_all(self) -> None:
        """At start: every model in the repository, per the version policy. Never raises
        for one bad model: it is logged and listed UNAVAILABLE with the reason."""
        for name in sorted(self.repository.models()):
            try:
                await self.load(name)
            except ApplianceError as exc:
                log.error("model %r not loaded: %s", name, exc)

    async def load(self, name: str) -> list[int]:
        """(Re)load a model from the repository: RepositoryModelLoad."""
        async with self._lock:
            sources = self.repository.versions(name)
            wanted = self._versions_to_load(name, sources)
            loaded: list[int] = []
            errors: list[str] = []
            for number in wanted:
                if number in self._loaded.get(name, {}):
                    loaded.append(number)
                    continue
                try:
                    await self._add(sources[number])
                    loaded.append(number)
                except ApplianceError as exc:
                    self._failed[(name, number)] = str(exc)
                    errors.append(str(exc))
            if not loaded:
                raise ModelLoadError(f"model {quoted(name)}: no version could be loaded: {errors}")
            if self._default.get(name) not in self._loaded[name]:
                self._default[name] = max(loaded)
            return loaded

    def _versions_to_load(self, name: str, sources: dict[int, VersionSource]) -> list[int]:
        if self.config.repository.version_policy == "all":
            return sorted(sources)
        active = self._active_version(name)
        return [active if active in sources else max(sources)]

    async def add_version(self, source: VersionSource) -> LoadedModel:
        """Load and warm up one version beside the others, without making it the default."""
        async with self._lock:
            return await self._add(source)

    async def _add(self, source: VersionSource) -> LoadedModel:
        if source.problem:
            raise ModelLoadError(source.problem)
        model = await asyncio.to_thread(self._build, source)
        self._loaded.setdefault(source.name, {})[source.version] = model
        self._failed.pop((source.name, source.version), None)
        log.info(
            "loaded model %s version %s (inputs %s; max batch %d)",
            source.name,
            source.version,
            model.spec.describe_inputs(),
            model.spec.max_batch_size,
        )
        return model

    def _build(self, source: VersionSource) -> LoadedModel:
        """Blocking: create the session, read specs, warm up."""
        runtime = self.config.runtime
        session = Session(source.model_file, self.providers, runtime.intra_op_threads)
        session.warm_up()
        batching = self.config.batching_for(source.name)
        max_batch = batching.max_batch_size if session.batchable else 0
        manifest = source.manifest
        if manifest is not None and max_batch:
            max_batch = min(max_batch, manifest.max_batch_size) or max_batch
        spec = ModelSpec(
            name=source.name,
            version=source.version,
            inputs=session.inputs,
            outputs=session.outputs,
            max_batch_size=max_batch,
            labels=manifest.labels if manifest else None,
        )
        settings = BatchSettings(
            enabled=batching.enabled and max_batch > 0,
            max_batch_size=max(max_batch, 1),
            max_queue_delay_us=batching.max_queue_delay_us,
            max_queue_size=batching.max_queue_size,
            instances=batching.instances,
        )
        cache_bytes = self.config.cache_bytes_for(source.name)
        cache = ResponseCache(source.name, source.version, cache_bytes) if cache_bytes else None
        model = LoadedModel(spec, session, settings, manifest, cache)
        if self.monitoring is not None:
            model.monitor = self.monitoring.attach(model)
        return model

    def set_default(self, name: str, version: int) -> int | None:
        """Atomically point unversioned requests at a loaded version; return the old one."""
        if version not in self._loaded.get(name, {}):
            raise ModelNotFoundError(f"model {name!r} version {version} is not loaded")
        previous = self._default.get(name)
        self._default[name] = version
        return previous

    async def retire(self, name: str, version: int, grace: float | None = None) -> None:
        """Drain one version (in-flight requests finish) and drop it."""
        model = self._loaded.get(name, {}).get(version)
        if model is None:
            return
        model.state = ModelState.UNLOADING
        await asyncio.to_thread(model.drain, grace)
        versions = self._loaded.get(name, {})
        versions.pop(version, None)
        if self.monitoring is not None:
            self.monitoring.detach(model)
        if not versions:
            self._loaded.pop(name, None)
            self._default.pop(name, None)
        elif self._default.get(name) == version:
            self._default[name] = max(versions)

    async def unload(self, name: str) -> None:
        """RepositoryModelUnload: drain and drop every loaded version of a model."""
        async with self._lock:
            if name not in self._loaded:
                raise self._not_loaded(name)
            for version in sorted(self._loaded.get(name, {})):
                await self.retire(name, version)

    async def close(self, grace: float | None = None) -> None:
        for model in self.loaded():
            await self.retire(model.name, model.version, grace)


__all__ = ["IndexEntry", "ModelManager", "version_number"]
