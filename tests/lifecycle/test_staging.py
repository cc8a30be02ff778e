"""The staging area's own bounds: the announced size and the idle timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.errors import DeadlineExceededError, PackageError
from appliance.lifecycle.staging import Staging, idle_bounded


def test_an_upload_announcing_more_than_the_maximum_is_refused_before_staging(
    tmp_path: Path,
) -> None:
    staging = Staging(tmp_path, max_bytes=4096)
    with pytest.raises(PackageError, match=r"1 byte to 4096 bytes \(lifecycle.max_package"):
        staging.begin_upload("big-1.apkg", 4097)
    assert not staging.root.exists()
    staging.begin_upload("ok-1.apkg", 4096).discard()


async def _trickle(gaps: list[float]) -> AsyncIterator[bytes]:
    for gap in gaps:
        await asyncio.sleep(gap)
        yield b"x"


def test_messages_pass_while_they_keep_coming_and_a_stall_is_refused() -> None:
    async def collect(gaps: list[float], idle: float) -> int:
        return len([m async for m in idle_bounded(_trickle(gaps), idle, "upload")])

    assert asyncio.run(collect([0.0, 0.0, 0.0], idle=30.0)) == 3
    with pytest.raises(DeadlineExceededError, match=r"upload: stalled, nothing arrived for 0\.2 s"):
        asyncio.run(collect([0.0, 30.0], idle=0.2))
