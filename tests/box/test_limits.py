"""Limits and start-up checks: what a box refuses, and that it says why."""

from __future__ import annotations

import queue
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from appliance.config import Config, parse_config
from appliance.errors import ConfigError
from appliance.server import _connection_options
from tests.box.conftest import BoxDaemon, infer_affine


def test_messages_and_concurrent_rpcs_over_their_limits_get_resource_exhausted(
    tmp_path: Path,
) -> None:
    config = {"server": {"max_message_bytes": 1024, "max_concurrent_rpcs": 1}}
    with BoxDaemon(tmp_path, config) as daemon:
        with triton.InferenceServerClient(daemon.address) as client:
            with pytest.raises(InferenceServerException) as too_big:
                infer_affine(client, np.zeros((100, 4), dtype=np.float32))  # 1,600 bytes
            assert "RESOURCE_EXHAUSTED" in str(too_big.value.status())
            assert "larger than max" in too_big.value.message()

            # An open stream holds the one RPC slot; a second RPC is turned away.
            answers: queue.Queue[object] = queue.Queue()
            client.start_stream(callback=lambda result, error: answers.put(error or result))
            x = triton.InferInput("x", [1, 4], "FP32")
            x.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
            client.async_stream_infer("affine", [x])
            assert not isinstance(answers.get(timeout=10), Exception)
            with (
                triton.InferenceServerClient(daemon.address) as second,
                pytest.raises(InferenceServerException) as busy,
            ):
                infer_affine(second)
            client.stop_stream()
        assert "RESOURCE_EXHAUSTED" in str(busy.value.status())


def test_keepalive_and_connection_age_reach_grpc() -> None:
    options = dict(_connection_options(Config().server))
    assert options["grpc.keepalive_time_ms"] == 60_000
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 10_000
    assert options["grpc.max_connection_age_ms"] == 1_800_000
    never = parse_config({"server": {"max_connection_age_s": 0}}).server
    assert "grpc.max_connection_age_ms" not in dict(_connection_options(never))


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"auth": {"tokens": [{"name": "x", "sha256": "abc", "roles": ["infer"]}]}}, "sha256"),
        ({"auth": {"tokens": [{"name": "x", "sha256": "a" * 64, "roles": []}]}}, "roles"),
        ({"auth": {"certificates": [{"common_name": "x", "roles": ["root"]}]}}, "roles"),
        ({"auth": {"enabled": "maybe"}}, "auth.enabled"),
        ({"logging": {"format": "xml"}}, "logging.format"),
        ({"server": {"max_concurrent_rpcs": 0}}, "server.max_concurrent_rpcs"),
        ({"server": {"keepalive": 5}}, "server.keepalive"),
    ],
)
def test_bad_security_and_limit_values_name_their_key(raw: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        parse_config(raw)


def test_a_reachable_port_without_any_credential_stops_the_start(tmp_path: Path) -> None:
    config = tmp_path / "appliance.toml"
    config.write_text('[server]\naddress = "0.0.0.0:0"\n')
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "auth.enabled" in result.stderr and "[[auth.tokens]]" in result.stderr
