"""Which model versions are loaded, and which one answers a request.

Owns the table of loaded versions and the per-model default version (the one an
unversioned request reaches). Loading runs in a worker thread (sessions take seconds to
build) and switching the default is a single assignment on the event loop, so a request
sees either the old or the new version, never a half-loaded one. The lifecycle
(``appliance.lifecycle``) builds staged activation and rollback on ``add_version``,
``set_default`` and ``retire``.

Which versions may become the default, and whether a folder may load at all, is a
``VersionPolicy``'s call (the lifecycle's ``ServingPolicy`` on a box): every version is
verified by it before its session is built, and one that fails is refused, logged and
skipped for the next preferred version, the last good one.

Routing (``appliance.routing``) hooks in here, so both ports get it: a cascade's name
answers as a model of its own, and each answer of a shadowed model's serving version
may be copied to its candidate (after the answer, never in its way).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from appliance.batcher import BatchSettings
from appliance.cache import ResponseCache
from appliance.clip import quoted
from appliance.config import Config
from appliance.embedding import TextEmbedder
from appliance.errors import (
    ApplianceError,
    ConfigError,
    ModelLoadError,
    ModelNotFoundError,
    NotReadyError,
)
from appliance.generative import EngineSettings, GenerativeVersion, genai_provider
from appliance.model import Array, LoadedModel, ModelSpec, ModelState, RequestTensor
from appliance.repository import TEXT_GENERATION, Repository, VersionSource
from appliance.routing import CascadeModel, RoutingCollector, ShadowTraffic, build_cascades
from appliance.runtime import ProviderChoice, Session

if TYPE_CHECKING:
    from appliance.monitoring import Monitoring
    from appliance.quality import Outcomes

log = logging.getLogger(__name__)

#: A loaded version: an ONNX model behind its batcher, or a generative model behind its
#: engine thread. Both have a name, version, spec, stats, state, ``infer`` and ``drain``.
Served = LoadedModel | GenerativeVersion
#: Sequences a generative model keeps waiting beyond its running batch, unless
#: ``[models.NAME] max_queue_size`` says otherwise (each holds a prompt and a KV cache
#: slot's worth of promise, far more than a classifier's request).
GENERATIVE_QUEUE = 64


class VersionPolicy(Protocol):
    def candidates(self, name: str, available: Collection[int]) -> list[int]:
        """Versions that may serve ``name`` by default, most preferred first."""
        ...

    def verify(self, source: VersionSource) -> None:
        """Blocking; raise an ``ApplianceError`` if the folder may not load."""
        ...

    def refused(self, source: VersionSource, reason: str) -> None:
        """``source`` failed ``verify``."""
        ...


class LatestFirst:
    """No lifecycle: every folder may load, the highest version serves (Triton's rule)."""

    def candidates(self, name: str, available: Collection[int]) -> list[int]:
        return sorted(available, reverse=True)

    def verify(self, source: VersionSource) -> None:
        return None

    def refused(self, source: VersionSource, reason: str) -> None:
        return None


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
        policy: VersionPolicy | None = None,
        monitoring: Monitoring | None = None,
    ):
        self.repository = repository
        self.monitoring = monitoring
        self.config = config
        self.providers = providers
        self._policy: VersionPolicy = policy or LatestFirst()
        self._loaded: dict[str, dict[int, Served]] = {}
        self._default: dict[str, int] = {}
        self._failed: dict[tuple[str, int], str] = {}
        self._lock = asyncio.Lock()  # one load/unload/switch at a time
        #: Predicted classes kept per request id for outcome feedback; set by the daemon.
        self.outcomes: Outcomes | None = None
        #: Shadows in force (``appliance models shadow``); in memory, a restart ends them.
        self.shadows = ShadowTraffic(self._find_classifier)
        #: ``[cascades.NAME]``, checked against the loaded models by ``load_all``.
        self.cascades: dict[str, CascadeModel] = {}
        if monitoring is not None and monitoring.enabled:
            monitoring.registry.register(RoutingCollector(self.shadows, lambda: self.cascades))

    # -- lookups ---------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._loaded)

    def loaded(self) -> list[Served]:
        return [m for name in sorted(self._loaded) for _, m in sorted(self._loaded[name].items())]

    def loaded_versions(self, name: str) -> list[int]:
        """The versions of ``name`` that answer, as V2 metadata lists them."""
        cascade = self.cascades.get(name)
        if cascade is not None:
            return [cascade.version]
        return sorted(self._loaded.get(name, {}))

    def default_version(self, name: str) -> int | None:
        return self._default.get(name)

    def get(self, name: str, version: str = "") -> Served:
        """The model that answers ``name`` at ``version`` ("" for the default)."""
        cascade = self.cascades.get(name)
        if cascade is not None:
            return cascade.at(version)
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

    def find(self, name: str, version: str) -> Served | None:
        """The loaded model of that exact version (a number), or None; never raises."""
        number = version_number(version)
        return None if number is None else self._loaded.get(name, {}).get(number)

    def _find_classifier(self, name: str, version: str) -> LoadedModel | None:
        """``find`` for shadows: only ONNX versions are shadowed."""
        model = self.find(name, version)
        return model if isinstance(model, LoadedModel) else None

    def _get_classifier(self, name: str) -> LoadedModel:
        """The default ONNX version of a cascade's stage; a generative one is refused."""
        model = self.get(name)
        if not isinstance(model, LoadedModel):
            raise ConfigError(f"cascade stage {quoted(name)} is a generative model")
        return model

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
        *,
        request_id: str = "",
    ) -> tuple[Served, dict[str, Array]]:
        """Run a request; an unversioned one that meets a version being retired retries.

        A request with an id leaves its predicted class for outcome feedback; a shadowed
        model's answer may then be copied to its candidate."""
        model, outputs = await self._infer(name, version, tensors, requested_outputs, deadline)
        if request_id and self.outcomes is not None and isinstance(model, LoadedModel):
            self.outcomes.remember(model, request_id, outputs)
        return model, outputs

    async def _infer(
        self,
        name: str,
        version: str,
        tensors: Sequence[RequestTensor],
        requested_outputs: Sequence[str],
        deadline: float | None,
    ) -> tuple[Served, dict[str, Array]]:
        model = self.get(name, version)
        try:
            outputs = await model.infer(tensors, requested_outputs, deadline)
        except NotReadyError:
            if version:
                raise
            # The default moved to a new version between lookup and queueing.
            successor = self.get(name, version)
            if successor is model:
                raise
            model = successor
            outputs = await model.infer(tensors, requested_outputs, deadline)
        if isinstance(model, LoadedModel):  # generative versions are not shadowed
            self.shadows.mirror(model, tensors, requested_outputs, outputs)
        return model, outputs

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
        """At start: every model in the repository, per the version policy, then the
        cascades over them. Never raises for one bad model: it is logged and listed
        UNAVAILABLE with the reason; a cascade that does not check out is a
        ``ConfigError``."""
        for name in sorted(self.repository.models()):
            try:
                await self.load(name)
            except ApplianceError as exc:
                log.error("model %r not loaded: %s", name, exc)
        self.cascades = build_cascades(
            self.config.cascades, self._get_classifier, set(self.repository.models())
        )
        if self.monitoring is not None:
            self.monitoring.serve_cascades({n: c.version for n, c in self.cascades.items()})

    async def load(self, name: str) -> list[int]:
        """(Re)load a model from the repository: RepositoryModelLoad.

        Tries the policy's candidates in order and serves the first that loads (the
        last good one when the preferred version is refused); ``version_policy = "all"``
        loads every version besides. Never makes a version the default that the policy
        does not name.
        """
        async with self._lock:
            sources = self.repository.versions(name)
            preferred = self._policy.candidates(name, set(sources))
            every = self.config.repository.version_policy == "all"
            loaded: list[int] = []
            errors: list[str] = []
            for number in self._load_order(preferred, sources):
                if loaded and not every:
                    break  # "latest": the first candidate that loads serves
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
                raise ModelLoadError(self._nothing_loaded(name, sorted(sources), errors))
            self._choose_default(name, preferred)
            return sorted(loaded)

    def _load_order(self, preferred: list[int], sources: dict[int, VersionSource]) -> list[int]:
        if self.config.repository.version_policy == "all":
            return preferred + sorted(set(sources) - set(preferred), reverse=True)
        return preferred

    def _nothing_loaded(self, name: str, on_disk: list[int], errors: list[str]) -> str:
        if not errors:
            return (
                f"model {quoted(name)}: no version is active (on disk: {on_disk}); activate one "
                "with `appliance models activate`"
            )
        return f"model {quoted(name)}: no version could be loaded: {errors}"

    def _choose_default(self, name: str, preferred: list[int]) -> None:
        versions = self._loaded.get(name, {})
        if self._default.get(name) in versions:
            return
        default = next((v for v in preferred if v in versions), None)
        if default is None:
            self._default.pop(name, None)
            log.warning("model %s: no active version loaded; requests must name one", name)
            return
        if default != preferred[0]:
            log.error(
                "model %s: serving version %d, the last good one (version %d did not load: %s)",
                name,
                default,
                preferred[0],
                self._failed.get((name, preferred[0]), "not loaded"),
            )
        self._default[name] = default

    async def add_version(self, source: VersionSource, *, verified: bool = False) -> Served:
        """Load and warm up one version beside the others, without making it the default.

        ``verified``: the caller has just verified the folder itself (a push, an
        activation), so the policy's check is not run twice.
        """
        async with self._lock:
            return await self._add(source, verified=verified)

    async def _add(self, source: VersionSource, *, verified: bool = False) -> Served:
        if source.problem:
            raise ModelLoadError(source.problem)
        if not verified:
            try:
                await asyncio.to_thread(self._policy.verify, source)
            except ApplianceError as exc:
                self._policy.refused(source, str(exc))
                raise
        model = await asyncio.to_thread(self._build, source)
        self._loaded.setdefault(source.name, {})[source.version] = model
        self._failed.pop((source.name, source.version), None)
        if isinstance(model, GenerativeVersion):
            log.info(
                "loaded generative model %s version %s (%s)",
                source.name,
                source.version,
                model.describe(),
            )
            return model
        log.info(
            "loaded model %s version %s (inputs %s; max batch %d)",
            source.name,
            source.version,
            model.spec.describe_inputs(),
            model.spec.max_batch_size,
        )
        return model

    def _build(self, source: VersionSource) -> Served:
        """Blocking: create the session, read specs, warm up."""
        if source.task == TEXT_GENERATION:
            return self._build_generative(source)
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
        embedder = None
        if source.task == "embedding":  # a bad tokenizer fails the load, not a request
            embedder = TextEmbedder.load(source.folder, manifest, spec.inputs, spec.outputs)
        cache_bytes = self.config.cache_bytes_for(source.name)
        cache = ResponseCache(source.name, source.version, cache_bytes) if cache_bytes else None
        model = LoadedModel(spec, session, settings, manifest, cache)
        model.embedder = embedder
        if self.monitoring is not None:
            model.monitor = self.monitoring.attach(model)
        return model

    def _build_generative(self, source: VersionSource) -> GenerativeVersion:
        """Blocking: start the engine thread on the folder, with its capacity from config."""
        overrides = self.config.models.get(source.name)
        settings = EngineSettings(
            provider=genai_provider(self.providers),
            max_batch_size=overrides.max_batch_size if overrides else None,
            max_queue_size=(overrides.max_queue_size if overrides else None) or GENERATIVE_QUEUE,
            max_session_tokens=overrides.max_session_tokens if overrides else None,
            kv_cache_fraction=overrides.kv_cache_fraction if overrides else None,
        )
        metrics = None
        if self.monitoring is not None:
            metrics = self.monitoring.attach_generative(source.name, source.version)
        return GenerativeVersion.load(
            source.name,
            source.version,
            source.folder,
            settings,
            manifest=source.manifest,
            metrics=metrics,
        )

    def set_default(self, name: str, version: int) -> int | None:
        """Atomically point unversioned requests at a loaded version; return the old one."""
        if version not in self._loaded.get(name, {}):
            raise ModelNotFoundError(f"model {quoted(name)} version {version} is not loaded")
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
            # Only a version the policy names may take over, never simply the highest.
            self._default.pop(name, None)
            self._choose_default(name, self._policy.candidates(name, set(versions)))

    async def unload(self, name: str) -> None:
        """RepositoryModelUnload: drain and drop every loaded version of a model."""
        async with self._lock:
            if name not in self._loaded:
                raise self._not_loaded(name)
            for version in sorted(self._loaded.get(name, {})):
                await self.retire(name, version)

    async def close(self, grace: float | None = None) -> None:
        await self.shadows.close()
        for model in self.loaded():
            await self.retire(model.name, model.version, grace)


__all__ = [
    "IndexEntry",
    "LatestFirst",
    "ModelManager",
    "Served",
    "VersionPolicy",
    "version_number",
]
