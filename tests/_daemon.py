"""Start the real daemon as a subprocess on loopback, for tests and benchmarks.

``DaemonProcess`` writes a config file, runs ``python -m appliance serve --config``, waits
until the server says ready over gRPC, and on exit sends SIGTERM and waits for the drain.
The daemon's stderr goes to a log file the test can read (``.log_text()``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from appliance._proto import grpc_service_pb2 as pb
from appliance._proto import grpc_service_pb2_grpc as pb_grpc


def daemon_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment, less what a library set in it at import time.

    flwr sets GRPC_VERBOSITY=error on import when the federated tests load it, which
    would hide from a daemon started later the gRPC core lines it audits (refused TLS
    handshakes): a daemon on a box starts with gRPC's defaults.
    """
    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    return {**env, **(extra or {})}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Path):
        return json.dumps(str(value))
    return json.dumps(value)  # str, bool, int and float read the same in TOML


def to_toml(config: dict[str, dict[str, Any]]) -> str:
    """Test configs: tables of scalars, lists and inline tables, with dotted sub-tables."""
    lines: list[str] = []

    def table(name: str, values: dict[str, Any]) -> None:
        subtables = {k: v for k, v in values.items() if isinstance(v, dict)}
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items() if k not in subtables)
        for key, sub in subtables.items():
            table(f"{name}.{key}", sub)

    for name, values in config.items():
        table(name, values)
    return "\n".join(lines) + "\n"


class DaemonProcess:
    """``with DaemonProcess(tmp_path, config) as d: d.address``."""

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        ready_timeout: float = 60.0,
        credentials: grpc.ChannelCredentials | None = None,
        *,
        wrapper: Sequence[str] = (),
        cwd: Path | None = None,
    ):
        """``cwd``: where ``python -m appliance`` runs, which decides the source tree it
        imports (a benchmark compares another checkout this way)."""
        self.workdir = workdir
        self.cwd = cwd
        self.port = free_port()
        self.metrics_port = free_port()
        self.http_port = free_port()
        base: dict[str, Any] = {
            "server": {
                "address": f"127.0.0.1:{self.port}",
                "http_address": f"127.0.0.1:{self.http_port}",
                "metrics_address": f"127.0.0.1:{self.metrics_port}",
                "grace_period_s": 5.0,
            },
            "repository": {"path": str(workdir / "repository")},
            "admin": {"socket": str(workdir / "admin.sock")},
        }
        for section, values in (config or {}).items():
            if isinstance(values, dict):
                base.setdefault(section, {}).update(values)
            else:
                base[section] = values
        self.config = base
        self.config_path = workdir / "appliance.toml"
        self.config_path.write_text(to_toml(base))
        self.log_path = workdir / "daemon.log"
        self.env = daemon_environment(env)
        self.ready_timeout = ready_timeout
        self.credentials = credentials
        #: Run the daemon under this command (``unshare ...``), as a box's unit would.
        self.wrapper = list(wrapper)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_address(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def start(self) -> DaemonProcess:
        (self.workdir / "repository").mkdir(exist_ok=True)
        with self.log_path.open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [
                    *self.wrapper,
                    sys.executable,
                    "-m",
                    "appliance",
                    "serve",
                    "--config",
                    str(self.config_path),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
            )
        self.wait_ready()
        return self

    def channel(self) -> grpc.Channel:
        if self.credentials is None:
            return grpc.insecure_channel(self.address)
        return grpc.secure_channel(self.address, self.credentials)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        with self.channel() as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"daemon exited with {self.process.returncode}:\n{self.log_text()}"
                    )
                try:
                    if stub.ServerReady(pb.ServerReadyRequest(), timeout=1).ready:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"daemon not ready after {self.ready_timeout} s:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 30.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
