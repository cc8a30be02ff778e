"""The model manager in process: real repositories on disk, real ONNX Runtime sessions,
no gRPC. Which versions load, which one answers, and how switching and retiring move
the default. (The same behaviour through the daemon is in tests/serving/.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from appliance.config import Config, parse_config
from appliance.errors import InvalidInputError, ModelLoadError, ModelNotFoundError, NotReadyError
from appliance.manager import LatestFirst, ModelManager
from appliance.model import ModelState, RequestTensor
from appliance.repository import EMBEDDED_ROOT, Repository
from appliance.runtime import ProviderChoice
from tests.models import affine_model, fixed_batch_model

CPU_ONLY = ProviderChoice(("CPUExecutionProvider",), "in-process test")
T = TypeVar("T")


def repository(root: Path) -> Path:
    """affine 1 and 2 (y = 2x + 1, y = 3x + 1), a fixed-shape model, a broken file."""
    affine_model(root / "affine" / "1" / "model.onnx", scale=2.0)
    affine_model(root / "affine" / "2" / "model.onnx", scale=3.0)
    fixed_batch_model(root / "fixed" / "1" / "model.onnx")
    broken = root / "broken" / "1" / "model.onnx"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not an onnx model")
    return root


class _Recorded(LatestFirst):
    """A state record's choice first, then Triton's rule (the highest version)."""

    def __init__(self, active_version: Callable[[str], int | None]):
        self._active = active_version

    def candidates(self, name: str, available: Collection[int]) -> list[int]:
        active = self._active(name)
        rest = super().candidates(name, available)
        return [active, *(v for v in rest if v != active)] if active in available else rest


def run_with(
    root: Path,
    scenario: Callable[[ModelManager], Awaitable[T]],
    config: Config | None = None,
    active_version: Callable[[str], int | None] | None = None,
) -> T:
    """Load the repository, run the scenario, retire everything (batcher threads end)."""

    async def main() -> T:
        policy = LatestFirst() if active_version is None else _Recorded(active_version)
        manager = ModelManager(Repository([root]), config or Config(), CPU_ONLY, policy)
        await manager.load_all()
        try:
            return await scenario(manager)
        finally:
            await manager.close(5)

    return asyncio.run(main())


def ones(rows: int, name: str = "x", width: int = 4) -> RequestTensor:
    data = np.ones((rows, width), np.float32)
    return RequestTensor(name=name, datatype="FP32", shape=data.shape, raw=data.tobytes())


async def answer(manager: ModelManager, name: str, version: str = "") -> tuple[int, Any]:
    model, outputs = await manager.infer(name, version, [ones(2)])
    return model.version, outputs["y"]


def test_the_latest_version_loads_and_answers_unversioned_requests(tmp_path: Path) -> None:
    async def scenario(manager: ModelManager) -> None:
        assert manager.names() == ["affine", "fixed"]  # broken: logged, not loaded
        assert [(m.name, m.version) for m in manager.loaded()] == [("affine", 2), ("fixed", 1)]
        assert manager.default_version("affine") == 2
        version, y = await answer(manager, "affine")
        assert version == 2
        np.testing.assert_array_equal(y, np.full((2, 4), 4.0, np.float32))
        with pytest.raises(
            ModelNotFoundError, match=r"no loaded version '1'; loaded versions: \[2\]"
        ):
            manager.get("affine", "1")

    run_with(repository(tmp_path), scenario)


def test_version_policy_all_loads_every_version_each_addressable(tmp_path: Path) -> None:
    async def scenario(manager: ModelManager) -> None:
        assert [m.version for m in manager.loaded() if m.name == "affine"] == [1, 2]
        assert (await answer(manager, "affine", "1"))[0] == 1
        assert float((await answer(manager, "affine", "1"))[1][0, 0]) == 3.0
        assert (await answer(manager, "affine"))[0] == 2

    config = parse_config({"repository": {"version_policy": "all"}})
    run_with(repository(tmp_path), scenario, config)


def test_the_recorded_active_version_loads_instead_of_the_latest(tmp_path: Path) -> None:
    async def scenario(manager: ModelManager) -> None:
        assert [m.version for m in manager.loaded() if m.name == "affine"] == [1]
        assert (await answer(manager, "affine"))[0] == 1

    run_with(repository(tmp_path), scenario, active_version={"affine": 1}.get)


def test_unknown_and_unloaded_models_say_which_is_which(tmp_path: Path) -> None:
    async def scenario(manager: ModelManager) -> None:
        with pytest.raises(
            ModelNotFoundError, match="no model named 'ghost'; serving: affine, fixed"
        ):
            await manager.infer("ghost", "", [ones(1)])
        await manager.unload("affine")
        with pytest.raises(NotReadyError, match="'affine' is in the repository but not loaded"):
            manager.get("affine")
        assert await manager.load("affine") == [2]
        assert (await answer(manager, "affine"))[0] == 2

    run_with(repository(tmp_path), scenario)


def test_a_model_that_does_not_load_is_listed_with_its_reason(tmp_path: Path) -> None:
    async def scenario(manager: ModelManager) -> None:
        entries = {(e.name, e.version): e for e in manager.index()}
        assert entries[("affine", 1)].state == "UNAVAILABLE"
        assert entries[("affine", 1)].reason == "not loaded"
        assert entries[("affine", 2)].state == "READY"
        broken = entries[("broken", 1)]
        assert broken.state == "UNAVAILABLE"
        assert "ONNX Runtime could not load the model" in broken.reason
        with pytest.raises(ModelLoadError, match="model 'broken': no version could be loaded"):
            await manager.load("broken")

    run_with(repository(tmp_path), scenario)


def test_switching_the_default_is_atomic_and_retiring_moves_it_back(tmp_path: Path) -> None:
    async def scenario(manager: ModelManager) -> None:
        versions = manager.repository.versions("affine")
        with pytest.raises(ModelNotFoundError, match="version 1 is not loaded"):
            manager.set_default("affine", 1)
        old = await manager.add_version(versions[1])
        assert manager.default_version("affine") == 2  # loaded beside, not yet serving
        assert manager.set_default("affine", 1) == 2
        assert (await answer(manager, "affine"))[0] == 1
        await manager.retire("affine", 1)
        assert old.state is ModelState.UNAVAILABLE
        assert manager.default_version("affine") == 2
        assert (await answer(manager, "affine"))[0] == 2
        await manager.retire("affine", 2)
        assert "affine" not in manager.names()
        assert manager.default_version("affine") is None

    run_with(repository(tmp_path), scenario)


def test_batching_follows_the_config_and_the_models_batch_axis(tmp_path: Path) -> None:
    async def scenario(manager: ModelManager) -> None:
        affine, fixed = manager.get("affine"), manager.get("fixed")
        assert affine.spec.max_batch_size == 8
        assert affine.batcher.settings.max_queue_delay_us == 250
        assert fixed.spec.max_batch_size == 0  # no dynamic first dimension: never batched
        assert not fixed.batcher.settings.enabled
        with pytest.raises(InvalidInputError, match="batch of 9 rows is over the maximum of 8"):
            await manager.infer("affine", "", [ones(9)])

    config = parse_config({"models": {"affine": {"max_batch_size": 8, "max_queue_delay_us": 250}}})
    run_with(repository(tmp_path), scenario, config)


def test_a_package_manifest_caps_the_batch_size(tmp_path: Path) -> None:
    """The embedded model is a package: its manifest says 64 rows; the config allows more."""

    async def scenario(manager: ModelManager) -> None:
        model = manager.get("breast_cancer")
        assert model.manifest is not None
        assert model.spec.labels == ("malignant", "benign")
        assert model.manifest.max_batch_size == 64
        assert model.spec.max_batch_size == 64

    config = parse_config({"batching": {"max_batch_size": 4096}})
    run_with(EMBEDDED_ROOT, scenario, config)
