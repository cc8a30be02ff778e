"""Generative versions in the same model manager as ONNX ones: a folder with
``genai_config.json`` loads as one, the default version switches and retires with a
drain, and a generation in flight on a retired version finishes within the grace."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from appliance.config import Config
from appliance.errors import NotReadyError
from appliance.generative import GenerativeVersion, ServedGenerative
from appliance.generative.types import SamplingOptions
from appliance.manager import ModelManager
from appliance.model import LoadedModel, ModelState
from appliance.repository import Repository
from appliance.runtime import ProviderChoice
from tests._lm import copy_model
from tests.models import affine_model

CPU_ONLY = ProviderChoice(("CPUExecutionProvider",), "in-process test")


def _repository(root: Path, lm_folder: Path) -> Path:
    copy_model(lm_folder, root / "lm" / "1")
    copy_model(lm_folder, root / "lm" / "2")
    affine_model(root / "affine" / "1" / "model.onnx", scale=2.0)
    return root


def test_generative_versions_share_the_manager(tmp_path: Path, lm_folder: Path) -> None:
    root = _repository(tmp_path / "repo", lm_folder)
    config = Config.model_validate({"repository": {"version_policy": "all"}})

    async def scenario() -> None:
        manager = ModelManager(Repository([root]), config, CPU_ONLY)
        await manager.load_all()
        try:
            lm = manager.get("lm")
            assert isinstance(lm, GenerativeVersion) and lm.version == 2
            assert isinstance(manager.get("affine"), LoadedModel)
            served = ServedGenerative(manager)
            assert served.names() == ["lm"]
            assert served.get("lm") is lm

            # A long generation on version 2 while version 1 takes over and 2 retires.
            long = SamplingOptions(max_tokens=200, ignore_eos=True)
            running = asyncio.create_task(lm.generate("The patient", long, None))
            await asyncio.sleep(0.05)
            assert manager.set_default("lm", 1) == 2
            await manager.retire("lm", 2, grace=30)
            done = await running
            assert done.completion_tokens == 200 and done.finish_reason == "length"
            assert lm.state is ModelState.UNAVAILABLE
            assert manager.get("lm").version == 1
            assert [(e.name, e.version, e.state) for e in manager.index()] == [
                ("affine", 1, "READY"),
                ("lm", 1, "READY"),
                ("lm", 2, "UNAVAILABLE"),
            ]
        finally:
            await manager.close(5)

    asyncio.run(scenario())


def test_a_retire_past_its_grace_cancels_the_generation(tmp_path: Path, lm_folder: Path) -> None:
    root = tmp_path / "repo"
    copy_model(lm_folder, root / "lm" / "1")

    async def scenario() -> None:
        manager = ModelManager(Repository([root]), Config(), CPU_ONLY)
        await manager.load_all()
        lm = manager.get("lm")
        assert isinstance(lm, GenerativeVersion)
        pieces = lm.stream("The patient", SamplingOptions(max_tokens=240, ignore_eos=True), None)
        await anext(pieces)
        await manager.close(0)  # no grace: the generation ends, the client may retry
        with pytest.raises(NotReadyError, match="unloading"):
            async for _ in pieces:
                pass
        assert lm.in_flight == 0

    asyncio.run(scenario())
