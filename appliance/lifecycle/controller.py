"""Staged, crash-safe changes to what the daemon serves: push, activate, roll back, remove.

A push walks these steps, each a fault point (``faults``) the crash tests stop at:

    receive into .staging/push-*/ -> unpack -> verify signature and manifest
    -> load a session beside the serving one -> golden self-test on this box
    [-> site evaluation gate, when activating a model with eval_data]
    -> rename into <repository>/<model>/<version>/ -> record the install
    [-> record the new active version -> switch -> drain and unload the old -> prune]

Nothing is served before it passed the self-test, and nothing half-written is ever in
the repository (``_durable``). The switch is ``ModelManager.set_default``: new requests
go to the new version at once, in-flight ones finish on the old, which is unloaded after
it drains. The state record (``state``) is written before the switch, so a crash after
it serves the new version on restart, and a crash before it the old one.

Cancellation: until the install begins (upload, unpack, verify, self-test) a cancelled
call undoes everything; from the first write to the state record to the end of the
switch the change runs to its end even if the caller cancels (``_uncancellable``), so
the record and what the daemon serves never disagree. The audit line then says ``ok``
with a note that the caller went away.

Site evaluation gate (``appliance.quality``): a model with ``[models.NAME] eval_data``
is activated (pushed with ``--activate``, or ``activate``) only when the candidate scores
no more than ``eval_max_drop`` below the serving version on that data, overall and in
every group; else the activation is refused with the table in the message (and so in the
audit record). A rollback is not gated: it is the operator's way back from a bad version.
A generative model is evaluated on its engines: the candidate's, loaded for the
self-test, and the serving version's; ``evaluate`` of a version that is not loaded loads
it for the evaluation and unloads it after.

Anti-rollback: a version below the highest ever activated (or the one serving) is
refused, at install as at activation, unless the operator passes the downgrade flag
(audited); ``rollback`` is that explicit operator intent by itself. Every action,
accepted or refused, goes to the audit log. One change at a time: the lifecycle holds
a lock for the whole of each. Uploads are bounded in size and refused once stalled
(``staging``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from appliance.errors import (
    DisabledError,
    DowngradeError,
    EvaluationGateError,
    ModelLoadError,
    ModelNotFoundError,
    PackageError,
    VersionExistsError,
    VersionInUseError,
)
from appliance.generative import GenerativeVersion
from appliance.lifecycle._durable import move_into_place, remove_folder, storage_errors
from appliance.lifecycle.audit import AuditSink, audited
from appliance.lifecycle.faults import fault_point, pause_point
from appliance.lifecycle.results import (
    ModelListing,
    PushResult,
    SwitchResult,
    VersionListing,
)
from appliance.lifecycle.selftest import run_generation_self_test, run_self_test
from appliance.lifecycle.staging import Staging, Upload, idle_bounded
from appliance.lifecycle.state import StateStore
from appliance.manager import ModelManager, Served
from appliance.package import MODEL_NAME, Manifest, unpack_package, verify_package
from appliance.package.archive import MAX_PACKAGE_BYTES
from appliance.repository import EMBEDDED_ROOT, TEXT_GENERATION, VersionSource

if TYPE_CHECKING:
    from appliance.quality import GateReport, SiteEvaluator

log = logging.getLogger(__name__)

Entry = dict[str, Any]
T = TypeVar("T")


class Lifecycle:
    def __init__(
        self,
        manager: ModelManager,
        state: StateStore,
        audit: AuditSink,
        *,
        repository: Path,
        trusted_keys: Sequence[Path],
        keep_versions: int,
        grace_s: float,
        max_package_bytes: int = MAX_PACKAGE_BYTES,
        upload_idle_timeout_s: float = 60.0,
        evaluator: SiteEvaluator | None = None,
    ):
        self._manager = manager
        self._state = state
        self._audit = audit
        self._root = repository
        self._staging = Staging(repository, max_package_bytes)
        self._upload_idle_s = upload_idle_timeout_s
        self._trusted_keys = list(trusted_keys)
        self._keep = keep_versions
        self._grace = grace_s
        self._lock = asyncio.Lock()
        self._evaluator = evaluator

    @contextlib.contextmanager
    def _action(self, action: str, who: str, **fields: Any) -> Iterator[Entry]:
        """One admin action: audited, and a repository that refuses writes said plainly."""
        with audited(self._audit, action, who, **fields) as entry, storage_errors(self._root):
            yield entry

    async def _uncancellable(self, change: Coroutine[Any, Any, T], entry: Entry) -> T:
        """Run a change that has begun to its end, even if the caller cancels meanwhile.

        A cancel that lands here is held until the change is done, then raised: the
        state record and what serves agree whatever the moment of the cancel.
        """
        task = asyncio.ensure_future(change)
        interrupted = False
        while not task.done():
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:
                if not interrupted:
                    log.warning(
                        "model %s: the caller cancelled during the change; finishing it so "
                        "the state record and the served version agree",
                        entry.get("model", "?"),
                    )
                interrupted = True
        result = task.result()  # the change's own error, if it failed
        if interrupted:
            entry.update(outcome="ok", note="the caller cancelled during the change; completed")
            raise asyncio.CancelledError
        return result

    def upload_messages(self, messages: AsyncIterator[T]) -> AsyncIterator[T]:
        """An upload's messages, refused once none arrives for the idle timeout."""
        return idle_bounded(messages, self._upload_idle_s, "upload")

    def _folder(self, name: str, version: int) -> Path:
        return self._root / name / str(version)

    def _exists(self, name: str, version: int) -> bool:
        try:
            return version in self._manager.repository.versions(name)
        except ModelNotFoundError:
            return False

    # -- push --------------------------------------------------------------------

    async def push(
        self,
        filename: str,
        total_size: int,
        chunks: AsyncIterator[bytes],
        *,
        activate: bool,
        allow_downgrade: bool,
        who: str,
    ) -> PushResult:
        """Receive a package, verify, self-test and install it; activate it if asked."""
        with self._action(
            "push", who, package=filename, activate=activate, allow_downgrade=allow_downgrade
        ) as entry:
            upload = self._staging.begin_upload(filename, total_size)
            try:
                await self._receive(upload, chunks)
                entry["digest"] = upload.digest
                fault_point("after_upload")
                started = time.monotonic()
                async with self._lock:
                    return await self._install(upload, activate, allow_downgrade, entry, started)
            finally:
                await asyncio.to_thread(upload.discard)

    async def _receive(self, upload: Upload, chunks: AsyncIterator[bytes]) -> None:
        async for chunk in chunks:
            upload.write(chunk)
        await asyncio.to_thread(upload.finish)

    async def _install(
        self, upload: Upload, activate: bool, allow_downgrade: bool, entry: Entry, started: float
    ) -> PushResult:
        folder = upload.folder / "package"
        manifest = await asyncio.to_thread(self._unpack_and_verify, upload.path, folder)
        name, version = manifest.name, manifest.version
        entry.update(model=name, version=version)
        self._check_new(name, version)
        # At install as at activation: with version_policy = "all" an installed version
        # answers the requests that name it.
        self._check_downgrade(name, version, allow_downgrade, entry)
        source = VersionSource(name, version, folder, manifest)
        await self._load_and_test(source, verified=True)
        fault_point("after_selftest")
        if activate:
            await self._gated(source, entry, loaded_before=False)
        change = self._commit_install(name, version, upload.digest, folder, activate)
        previous = await self._uncancellable(change, entry)
        if activate:
            entry["previous"] = previous
        return PushResult(
            name, version, upload.digest, activate, previous, time.monotonic() - started
        )

    async def _commit_install(
        self, name: str, version: int, digest: str, folder: Path, activate: bool
    ) -> int | None:
        """Move the tested version into the repository, record it, switch if asked."""
        try:
            await asyncio.to_thread(self._state.record_pending, name, version, digest)
            await asyncio.to_thread(move_into_place, folder, self._folder(name, version))
        except BaseException:
            await self._manager.retire(name, version, 0)
            raise
        fault_point("after_install")
        await asyncio.to_thread(self._state.record_install, name, version, digest)
        if activate:
            return await self._switch(name, version, rollback=False)
        await self._manager.retire(name, version, self._grace)
        return None

    def _unpack_and_verify(self, apkg: Path, folder: Path) -> Manifest:
        unpack_package(apkg, folder, max_bytes=self._staging.max_bytes)
        fault_point("after_unpack")
        manifest = verify_package(folder, self._trusted_keys)
        fault_point("after_verify")
        return manifest

    def _check_new(self, name: str, version: int) -> None:
        if self._exists(name, version) or self._folder(name, version).exists():
            raise VersionExistsError(
                f"model {name!r} version {version} is already installed; expected a new "
                "version number (remove the old one first to replace it)"
            )

    def _check_downgrade(self, name: str, version: int, allowed: bool, entry: Entry) -> None:
        floor = max(self._state.highest_activated(name), self._manager.default_version(name) or 0)
        if version >= floor:
            return
        if not allowed:
            raise DowngradeError(
                f"model {name!r} version {version} is below version {floor}, the highest "
                "activated so far; pass --allow-downgrade to accept it anyway (audited)"
            )
        entry["downgrade"] = True
        log.warning("model %s: downgrade from %d to %d allowed", name, floor, version)

    async def _load_and_test(self, source: VersionSource, *, verified: bool) -> Served:
        """A session (or engine) for ``source`` beside the serving one, passed its golden
        cases."""
        existing = self._loaded(source.name, source.version)
        model = existing or await self._manager.add_version(source, verified=verified)
        label = f"model {source.name!r} version {source.version}"
        try:
            passed, providers = await self._self_test(label, source, model)
        except BaseException:
            if existing is None:
                await self._manager.retire(source.name, source.version, 0)
            raise
        log.info("%s passed its self-test (%d golden cases on %s)", label, passed, providers)
        return model

    @staticmethod
    async def _self_test(label: str, source: VersionSource, model: Served) -> tuple[int, str]:
        """(cases passed, providers): tensors through the session, or prompts through the
        generation engine."""
        manifest = source.manifest
        if isinstance(model, GenerativeVersion):
            golden = manifest.generation_golden if manifest else None
            passed = await run_generation_self_test(label, golden, model)
            return passed, ",".join(model.providers)
        providers = ",".join(model.session.providers)
        tensors = manifest.golden if manifest else None
        run = model.session.run
        return await asyncio.to_thread(run_self_test, label, tensors, run, providers), providers

    def _loaded(self, name: str, version: int) -> Served | None:
        for model in self._manager.loaded():
            if model.name == name and model.version == version:
                return model
        return None

    async def _switch(self, name: str, version: int, rollback: bool) -> int | None:
        """Record, then point new requests at ``version``; drain the old; prune."""
        previous = self._manager.default_version(name)
        await asyncio.to_thread(self._record_switch, name, version, previous, rollback)
        fault_point("after_record")
        self._manager.set_default(name, version)
        fault_point("after_switch")
        log.info("model %s: version %s serves now (was %s)", name, version, previous)
        if previous is not None and previous != version:
            await self._manager.retire(name, previous, self._grace)
        fault_point("after_retire")
        await self._prune(name)
        return previous

    def _record_switch(self, name: str, version: int, previous: int | None, rollback: bool) -> None:
        """Worker thread: the state record says ``version`` is active from now on."""
        pause_point("before_record")
        if rollback:
            self._state.record_rollback(name, version)
        else:
            self._state.record_activation(name, version, previous)

    async def _prune(self, name: str) -> None:
        """Delete previously active versions beyond the ``keep_versions`` most recent."""
        record = self._state.model(name)
        doomed = record.previous[: max(len(record.previous) - self._keep, 0)]
        for version in doomed:
            folder = self._folder(name, version)
            if self._loaded(name, version) is not None:
                await self._manager.retire(name, version, self._grace)
            if folder.is_dir():
                await asyncio.to_thread(remove_folder, folder, self._staging.root)
                log.info("model %s: pruned version %d (keep %d)", name, version, self._keep)
            await asyncio.to_thread(self._state.forget, name, version)

    # -- activate, rollback, remove -------------------------------------------------

    async def activate(
        self, name: str, version: int, *, allow_downgrade: bool, who: str
    ) -> SwitchResult:
        with self._action(
            "activate", who, model=name, version=version, allow_downgrade=allow_downgrade
        ) as entry:
            async with self._lock:
                started = time.monotonic()
                entry["digest"] = self._state.digest(name, version)
                current = self._manager.default_version(name)
                # Serving it is not enough: a fallback after a refused version serves
                # what the record does not name, and activating it must record it.
                if current == version and self._state.active_version(name) in (version, None):
                    entry["note"] = "already active"
                    return SwitchResult(name, version, current, 0.0)
                source = self._package_source(name, version)
                self._check_downgrade(name, version, allow_downgrade, entry)
                previous = await self._test_and_switch(source, entry, rollback=False)
                entry["previous"] = previous
                return SwitchResult(name, version, previous, time.monotonic() - started)

    async def rollback(self, name: str, *, who: str) -> SwitchResult:
        with self._action("rollback", who, model=name) as entry:
            async with self._lock:
                started = time.monotonic()
                version = self._rollback_target(name)
                entry.update(
                    version=version,
                    digest=self._state.digest(name, version),
                    downgrade=version < self._state.highest_activated(name),
                )
                source = self._package_source(name, version)
                previous = await self._test_and_switch(source, entry, rollback=True)
                entry["previous"] = previous
                return SwitchResult(name, version, previous, time.monotonic() - started)

    async def _test_and_switch(
        self, source: VersionSource, entry: Entry, rollback: bool
    ) -> int | None:
        # Re-verify: the folder may have been touched since it was installed.
        if not source.folder.is_relative_to(EMBEDDED_ROOT):
            await asyncio.to_thread(verify_package, source.folder, self._trusted_keys)
        loaded_before = self._loaded(source.name, source.version) is not None
        await self._load_and_test(source, verified=True)
        fault_point("after_selftest")
        if not rollback:
            await self._gated(source, entry, loaded_before=loaded_before)
        switch = self._switch(source.name, source.version, rollback)
        return await self._uncancellable(switch, entry)

    async def _gated(self, source: VersionSource, entry: Entry, *, loaded_before: bool) -> None:
        """The site evaluation gate, when the model has evaluation data; a refused
        candidate's session is unloaded unless it was loaded before."""
        evaluator = self._evaluator
        if evaluator is None or not evaluator.configured(source.name):
            return
        try:
            serving = self._serving_source(source)
            report = await evaluator.evaluate(source, serving, self._generators(source, serving))
            entry["evaluation"] = report.summary()
            if not report.passed:
                raise EvaluationGateError(f"{report.summary()}; refused:\n{report.table()}")
        except BaseException:
            if not loaded_before:
                await self._manager.retire(source.name, source.version, 0)
            raise

    def _serving_source(self, candidate: VersionSource) -> VersionSource | None:
        """The version serving ``candidate``'s model now, if another one does."""
        serving = self._manager.default_version(candidate.name)
        if serving is None or serving == candidate.version:
            return None
        return self._manager.repository.versions(candidate.name).get(serving)

    def _generators(self, *sources: VersionSource | None) -> dict[int, GenerativeVersion]:
        """The loaded generative versions among ``sources``: what a generative model's
        evaluation answers with (a classifier's opens sessions of its own)."""
        found: dict[int, GenerativeVersion] = {}
        for source in sources:
            model = self._loaded(source.name, source.version) if source else None
            if isinstance(model, GenerativeVersion):
                found[model.version] = model
        return found

    async def evaluate(self, name: str, version: int, *, who: str) -> GateReport:
        """``appliance models evaluate``: ``version`` (0: the serving one) against the
        serving version, on the model's evaluation data. Changes nothing."""
        with self._action("evaluate", who, model=name, version=version) as entry:
            if self._evaluator is None:
                raise DisabledError("the site evaluation gate is not set up on this daemon")
            serving = self._manager.default_version(name)
            number = version or serving
            if number is None:
                raise ModelNotFoundError(
                    f"model {name!r} has no serving version; name the version to evaluate"
                )
            source = self._package_source(name, number)
            if source.task == TEXT_GENERATION and self._loaded(name, number) is None:
                report = await self._evaluate_unloaded(self._evaluator, source)
            else:
                against = self._serving_source(source)
                generators = self._generators(source, against)
                report = await self._evaluator.evaluate(source, against, generators)
            entry["evaluation"] = report.summary()
            return report

    async def _evaluate_unloaded(
        self, evaluator: SiteEvaluator, source: VersionSource
    ) -> GateReport:
        """A generative version that does not serve answers from an engine of its own:
        loaded and self-tested beside the serving one for the evaluation, unloaded after.
        Under the lock, so no activation loads or retires it meanwhile."""
        async with self._lock:
            if self._loaded(source.name, source.version) is not None:
                loaded_before = True
            else:
                loaded_before = False
                await self._load_and_test(source, verified=False)
            try:
                serving = self._serving_source(source)
                generators = self._generators(source, serving)
                return await evaluator.evaluate(source, serving, generators)
            finally:
                if not loaded_before:
                    await self._manager.retire(source.name, source.version, 0)

    def _package_source(self, name: str, version: int) -> VersionSource:
        versions = self._manager.repository.versions(name)
        source = versions.get(version)
        if source is None:
            raise ModelNotFoundError(
                f"model {name!r} has no version {version} on disk; versions on disk: "
                f"{sorted(versions)}"
            )
        if source.problem:
            raise ModelLoadError(source.problem)
        if source.manifest is None:
            raise PackageError(
                f"model {name!r} version {version} is a bare model folder; expected a pushed "
                "package (model.json and signature) to activate"
            )
        return source

    def _rollback_target(self, name: str) -> int:
        record = self._state.model(name)
        for version in reversed(record.previous):
            if self._exists(name, version):
                return version
        raise ModelNotFoundError(
            f"model {name!r} has no earlier version on disk to roll back to (kept: "
            f"{record.previous or 'none'}, keep_versions={self._keep})"
        )

    async def remove(self, name: str, version: int, *, who: str) -> None:
        with self._action("remove", who, model=name, version=version) as entry:
            async with self._lock:
                entry["digest"] = self._state.digest(name, version)
                if version in (
                    self._manager.default_version(name),
                    self._state.active_version(name),
                ):
                    raise VersionInUseError(
                        f"model {name!r} version {version} is active; activate another "
                        "version or roll back before removing it"
                    )
                folder = self._folder(name, version)
                if not (folder / MODEL_NAME).is_file():
                    raise ModelNotFoundError(
                        f"model {name!r} has no version {version} in the repository "
                        f"{self._root}; see `appliance models list`"
                    )
                if self._loaded(name, version) is not None:
                    await self._manager.retire(name, version, self._grace)
                await asyncio.to_thread(remove_folder, folder, self._staging.root)
                await asyncio.to_thread(self._state.forget, name, version)

    # -- reading -------------------------------------------------------------------

    def listing(self, name: str = "") -> list[ModelListing]:
        on_disk = self._manager.repository.models()
        loaded = {(m.name, m.version) for m in self._manager.loaded()}
        names = sorted(set(on_disk) | {n for n, _ in loaded})
        if name:
            if name not in names:
                raise ModelNotFoundError(
                    f"no model named {name!r}; known: {', '.join(names) or 'none'}"
                )
            names = [name]
        return [self._model_listing(n, set(on_disk.get(n, {})), loaded) for n in names]

    def _model_listing(
        self, name: str, on_disk: set[int], loaded: set[tuple[str, int]]
    ) -> ModelListing:
        record = self._state.record.models.get(name)
        active = self._manager.default_version(name)
        numbers = sorted(on_disk | {v for n, v in loaded if n == name})
        versions = tuple(
            VersionListing(
                version=v,
                on_disk=v in on_disk,
                loaded=(name, v) in loaded,
                active=v == active,
                digest=record.versions[v].digest if record and v in record.versions else "",
                installed_at=(
                    record.versions[v].installed_at if record and v in record.versions else ""
                ),
            )
            for v in numbers
        )
        return ModelListing(
            name=name,
            active_version=active,
            highest_activated=record.highest_activated if record else 0,
            rollback_versions=tuple(reversed(record.previous)) if record else (),
            versions=versions,
        )


__all__ = ["Lifecycle"]
