"""The lifecycle controller in process: real packages, signatures, sessions and self-tests
through ``Lifecycle`` and ``ModelManager``, no gRPC and no daemon. What each action
serves afterwards, what it leaves on disk and in the state record, and what it audits.
(The same actions through the admin CLI and a real daemon are in the other files here.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from appliance.config import Config
from appliance.errors import (
    DowngradeError,
    ModelNotFoundError,
    SelfTestError,
    SignatureError,
    VersionExistsError,
    VersionInUseError,
)
from appliance.lifecycle import Lifecycle, ServingPolicy, StateStore, recover
from appliance.manager import ModelManager
from appliance.repository import Repository
from appliance.runtime import ProviderChoice
from tests.lifecycle.conftest import MODEL, Packages, member, rewrite_package

CPU_ONLY = ProviderChoice(("CPUExecutionProvider",), "in-process test")
WHO = "uid:0(test)"
T = TypeVar("T")


class Audit:
    """The audit trail, kept in a list."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record(self, event: str, **fields: object) -> None:
        self.records.append({"event": event, **fields})

    def last(self, event: str) -> dict[str, Any]:
        return next(r for r in reversed(self.records) if r["event"] == event)


class Box:
    """What the daemon builds at start, minus the servers: state, manager, lifecycle."""

    def __init__(self, root: Path, packages: Packages, keep_versions: int):
        self.root = root
        self.audit = Audit()
        self.state = StateStore(root)
        recover(root, self.state, self.audit)
        # As the daemon wires it: the state record decides what serves.
        policy = ServingPolicy(
            self.state,
            self.audit,
            repository=root,
            trusted_keys=[packages.public],
            require_signed=False,
        )
        roots = policy.roots(serve_default_model=True)
        self.manager = ModelManager(Repository(roots), Config(), CPU_ONLY, policy)
        self.lifecycle = Lifecycle(
            self.manager,
            self.state,
            self.audit,
            repository=root,
            trusted_keys=[packages.public],
            keep_versions=keep_versions,
            grace_s=1.0,
        )

    async def push(self, package: Path, *, activate: bool, allow_downgrade: bool = False) -> Any:
        return await self.lifecycle.push(
            package.name,
            package.stat().st_size,
            _chunks(package.read_bytes()),
            activate=activate,
            allow_downgrade=allow_downgrade,
            who=WHO,
        )

    @property
    def serving(self) -> int | None:
        return self.manager.default_version(MODEL)

    @property
    def loaded(self) -> list[int]:
        return [m.version for m in self.manager.loaded() if m.name == MODEL]

    def on_disk(self, version: int) -> bool:
        return (self.root / MODEL / str(version) / "model.onnx").is_file()

    def staging_leftovers(self) -> list[str]:
        staging = self.root / ".staging"
        return sorted(p.name for p in staging.glob("push-*")) if staging.is_dir() else []


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def on_box(
    tmp_path: Path,
    packages: Packages,
    scenario: Callable[[Box], Awaitable[T]],
    keep_versions: int = 3,
) -> T:
    async def main() -> T:
        box = Box(tmp_path / "repository", packages, keep_versions)
        await box.manager.load_all()
        try:
            return await scenario(box)
        finally:
            await box.manager.close(5)

    return asyncio.run(main())


def test_a_push_with_activate_serves_the_new_version_and_records_it(
    tmp_path: Path, packages: Packages
) -> None:
    async def scenario(box: Box) -> None:
        assert box.serving == 1  # the embedded model, while the repository is empty
        result = await box.push(packages.build(2), activate=True)
        assert (result.name, result.version, result.previous_version) == (MODEL, 2, 1)
        assert result.activated
        assert result.digest.startswith("sha256:")
        assert box.serving == 2 and box.loaded == [2]  # the old one drained and unloaded
        assert box.on_disk(2) and box.staging_leftovers() == []
        assert box.state.active_version(MODEL) == 2
        assert box.state.digest(MODEL, 2) == result.digest
        audit = box.audit.last("admin.push")
        assert audit["outcome"] == "ok" and audit["caller"] == WHO
        assert (audit["model"], audit["version"], audit["previous"]) == (MODEL, 2, 1)
        assert audit["digest"] == result.digest

    on_box(tmp_path, packages, scenario)


def test_a_push_alone_installs_without_serving_and_activate_switches_later(
    tmp_path: Path, packages: Packages
) -> None:
    async def scenario(box: Box) -> None:
        await box.push(packages.build(2), activate=False)
        assert box.serving == 1 and box.loaded == [1]  # installed, not loaded
        assert box.on_disk(2) and box.state.active_version(MODEL) is None
        switched = await box.lifecycle.activate(MODEL, 2, allow_downgrade=False, who=WHO)
        assert (switched.version, switched.previous_version) == (2, 1)
        assert box.serving == 2
        again = await box.lifecycle.activate(MODEL, 2, allow_downgrade=False, who=WHO)
        assert (
            again.previous_version == 2
            and box.audit.last("admin.activate")["note"] == "already active"
        )

    on_box(tmp_path, packages, scenario)


def test_what_is_refused_leaves_serving_disk_and_state_untouched(
    tmp_path: Path, packages: Packages
) -> None:
    good = packages.build(2)
    manifest = member(good, "model.json").replace(b'"version": 2', b'"version": 20')
    tampered = rewrite_package(good, tmp_path / f"{MODEL}-20.apkg", {"model.json": manifest})
    refusals: list[tuple[Path, type[Exception], str]] = [
        (tampered, SignatureError, "model.json"),
        (packages.build(3, key=packages.other_private), SignatureError, "trusted"),
        (packages.build(4, bad_golden=True), SelfTestError, "golden"),
    ]

    async def scenario(box: Box) -> None:
        for package, error, named in refusals:
            with pytest.raises(error, match=named):
                await box.push(package, activate=True)
            audit = box.audit.last("admin.push")
            assert audit["outcome"] == "refused" and named in audit["reason"]
            assert box.serving == 1 and box.loaded == [1]
            assert box.staging_leftovers() == []
        assert not any(box.on_disk(v) for v in (2, 3, 4, 20))
        assert box.state.record.models == {}

    on_box(tmp_path, packages, scenario)


def test_an_installed_version_is_not_pushed_twice(tmp_path: Path, packages: Packages) -> None:
    async def scenario(box: Box) -> None:
        await box.push(packages.build(2), activate=True)
        with pytest.raises(VersionExistsError, match="version 2 is already installed"):
            await box.push(packages.build(2), activate=True)
        assert box.serving == 2 and box.audit.last("admin.push")["outcome"] == "refused"

    on_box(tmp_path, packages, scenario)


def test_a_downgrade_needs_the_flag_and_is_audited_as_one(
    tmp_path: Path, packages: Packages
) -> None:
    async def scenario(box: Box) -> None:
        await box.push(packages.build(3), activate=True)
        with pytest.raises(DowngradeError, match="below version 3, the highest activated"):
            await box.push(packages.build(2), activate=True)
        assert box.serving == 3 and not box.on_disk(2)
        await box.push(packages.build(2), activate=True, allow_downgrade=True)
        assert box.serving == 2
        assert box.audit.last("admin.push")["downgrade"] is True
        assert box.state.highest_activated(MODEL) == 3

    on_box(tmp_path, packages, scenario)


def test_rollback_and_remove_walk_back_through_the_kept_versions(
    tmp_path: Path, packages: Packages
) -> None:
    async def scenario(box: Box) -> None:
        await box.push(packages.build(2), activate=True)
        await box.push(packages.build(3), activate=True)
        with pytest.raises(VersionInUseError, match="version 3 is active"):
            await box.lifecycle.remove(MODEL, 3, who=WHO)
        back = await box.lifecycle.rollback(MODEL, who=WHO)
        assert (back.version, back.previous_version) == (2, 3)
        assert box.serving == 2 and box.audit.last("admin.rollback")["downgrade"] is True
        await box.lifecycle.remove(MODEL, 3, who=WHO)
        assert not box.on_disk(3) and box.state.digest(MODEL, 3) == ""
        with pytest.raises(ModelNotFoundError, match="has no version 3 in the repository"):
            await box.lifecycle.remove(MODEL, 3, who=WHO)
        (listing,) = box.lifecycle.listing(MODEL)
        assert listing.active_version == 2 and listing.highest_activated == 3
        assert [(v.version, v.active, v.loaded) for v in listing.versions] == [
            (1, False, False),
            (2, True, True),
        ]

    on_box(tmp_path, packages, scenario)


def test_rollback_with_nothing_to_roll_back_to_says_so(tmp_path: Path, packages: Packages) -> None:
    async def scenario(box: Box) -> None:
        with pytest.raises(ModelNotFoundError, match="no earlier version on disk to roll back to"):
            await box.lifecycle.rollback(MODEL, who=WHO)
        assert box.audit.last("admin.rollback")["outcome"] == "refused"

    on_box(tmp_path, packages, scenario)


def test_versions_beyond_keep_versions_are_pruned_after_a_switch(
    tmp_path: Path, packages: Packages
) -> None:
    async def scenario(box: Box) -> None:
        for version in (2, 3, 4):
            await box.push(packages.build(version), activate=True)
        assert box.serving == 4
        assert [v for v in (2, 3, 4) if box.on_disk(v)] == [3, 4]  # keep one previous
        assert box.state.model(MODEL).previous == [3]
        assert box.state.digest(MODEL, 2) == ""

    on_box(tmp_path, packages, scenario, keep_versions=1)


def test_a_restart_serves_what_the_state_record_says(tmp_path: Path, packages: Packages) -> None:
    async def first(box: Box) -> None:
        await box.push(packages.build(2), activate=True)
        await box.push(packages.build(3), activate=False)

    async def after_restart(box: Box) -> None:
        assert box.serving == 2 and box.loaded == [2]  # recorded active, not the latest

    on_box(tmp_path, packages, first)
    on_box(tmp_path, packages, after_restart)
