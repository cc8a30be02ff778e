"""Start-up and shutdown of the daemon process: config errors, SIGTERM drains."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc.aio as triton_aio

from tests._daemon import DaemonProcess
from tests.models import slow_model
from tests.serving.conftest import infer_input


def _serve(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_unknown_config_key_stops_the_start_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "appliance.toml"
    config.write_text('[server]\naddress = "127.0.0.1:0"\nthreads = 4\n')
    result = _serve(config)
    assert result.returncode == 2
    assert "unknown key 'server.threads'" in result.stderr


def test_bad_config_value_names_key_expected_and_got(tmp_path: Path) -> None:
    config = tmp_path / "appliance.toml"
    config.write_text('[server]\naddress = "localhost"\n')
    result = _serve(config)
    assert result.returncode == 2
    assert "server.address" in result.stderr
    assert "expected HOST:PORT" in result.stderr and "'localhost'" in result.stderr


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    result = _serve(tmp_path / "nope.toml")
    assert result.returncode == 2
    assert "nope.toml does not exist" in result.stderr


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with DaemonProcess(tmp_path) as first:
        config = tmp_path / "second.toml"
        config.write_text(f'[server]\naddress = "{first.address}"\n')
        result = _serve(config)
    assert result.returncode == 2
    assert first.address in result.stderr and "could not listen" in result.stderr


def test_sigterm_finishes_in_flight_requests_then_exits_zero(tmp_path: Path) -> None:
    # Deep and narrow: small requests (sent in no time) that take long to compute.
    slow_model(tmp_path / "repository" / "slow" / "1" / "model.onnx", depth=1024)
    # A generous grace period: the test is about finishing, not about timing.
    config = {"batching": {"enabled": False}, "server": {"grace_period_s": 120.0}}
    daemon = DaemonProcess(tmp_path, config).start()
    assert daemon.process is not None
    big = np.ones((32, 256), np.float32)

    async def in_flight_then_sigterm() -> list[object]:
        async with triton_aio.InferenceServerClient(daemon.address) as client:
            calls = [
                asyncio.ensure_future(client.infer("slow", [infer_input("x", big, "FP32")]))
                for _ in range(3)
            ]
            await asyncio.sleep(0.3)  # all three sent; the first is running
            daemon.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            return list(await asyncio.gather(*calls, return_exceptions=True))

    outcomes = asyncio.run(in_flight_then_sigterm())
    assert daemon.process.wait(timeout=30) == 0
    for outcome in outcomes:
        assert not isinstance(outcome, Exception), outcome
        np.testing.assert_array_equal(outcome.as_numpy("y"), big)  # type: ignore[attr-defined]
    log = daemon.log_text()
    assert "draining" in log and "stopped" in log


@pytest.mark.parametrize("sig", [signal.SIGINT])
def test_sigint_also_drains(tmp_path: Path, sig: signal.Signals) -> None:
    daemon = DaemonProcess(tmp_path).start()
    assert daemon.process is not None
    daemon.process.send_signal(sig)
    assert daemon.process.wait(timeout=30) == 0
