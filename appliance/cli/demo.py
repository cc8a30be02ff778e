"""``appliance demo``: start the daemon on the embedded model and show a real prediction.

The first thing a new user runs. It starts ``appliance serve`` as a child process on a
free loopback port, calls it with ``tritonclient`` (the same client a clinical
application would use), prints the answer for a few tumours from the held-out data
shipped with the model, and stops the daemon with SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from appliance.errors import NotReadyError

MODEL = "breast_cancer"


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="serve the embedded model and show a real prediction over gRPC",
        description="Start the daemon on the embedded breast-cancer model, ask it for "
        "predictions with tritonclient, print them, stop the daemon.",
    )
    parser.add_argument("--address", help="HOST:PORT to serve on (default: a free port)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    address = args.address or f"127.0.0.1:{_free_port()}"
    console = Console()
    console.print(f"starting [bold]appliance serve[/] on {address} ...")
    with tempfile.TemporaryDirectory(prefix="appliance-demo-") as scratch:
        config = _demo_config(Path(scratch))
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "appliance",
                "serve",
                "--config",
                str(config),
                "--address",
                address,
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        return _show(console, address, child)


def _demo_config(scratch: Path) -> Path:
    """An empty repository (so the embedded model serves) and private ports and socket,
    so the demo never touches a box's real repository or admin socket."""
    config = scratch / "appliance.toml"
    config.write_text(
        f'[server]\nmetrics_address = "127.0.0.1:{_free_port()}"\n'
        f'http_address = "127.0.0.1:{_free_port()}"\n'
        f'[repository]\npath = "{scratch / "models"}"\n'
        f'[admin]\nsocket = "{scratch / "admin.sock"}"\n'
    )
    return config


def _show(console: Any, address: str, child: subprocess.Popen[str]) -> int:
    import numpy as np
    import tritonclient.grpc as triton
    from rich.table import Table

    from appliance.package.manifest import read_manifest
    from appliance.repository import EMBEDDED_ROOT

    try:
        with triton.InferenceServerClient(address) as client:
            _wait_ready(client, child)
            meta = client.get_model_metadata(MODEL)
            golden = read_manifest(EMBEDDED_ROOT / MODEL / "1").golden
            assert golden is not None
            case = golden.cases[0].inputs["input"]
            x = np.asarray(case.data, dtype=np.float32).reshape(case.shape)
            tensor = triton.InferInput("input", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            result = client.infer(MODEL, [tensor])
            probs = result.as_numpy("probabilities")
        table = Table(title=f"{MODEL} v{meta.versions[0]} over KServe V2 gRPC at {address}")
        for column in ("tumour", "mean radius", "P(malignant)", "P(benign)", "call"):
            table.add_column(column)
        labels = ("malignant", "benign")
        for i, (row, p) in enumerate(zip(x, probs, strict=True)):
            table.add_row(
                str(i + 1), f"{row[0]:.2f}", f"{p[0]:.3f}", f"{p[1]:.3f}", labels[int(p.argmax())]
            )
        console.print(table)
        console.print(
            "inputs: " + ", ".join(f"{t.name} {t.datatype} {list(t.shape)}" for t in meta.inputs)
        )
    finally:
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=30)
    if child.returncode != 0:
        console.print(stderr)
        return 1
    console.print("daemon drained and stopped (exit 0)")
    return 0


def _wait_ready(client: Any, child: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise NotReadyError(
                f"the daemon exited early:\n{child.stderr.read() if child.stderr else ''}"
            )
        try:
            if client.is_server_ready():
                return
        except Exception:  # not listening yet
            pass
        time.sleep(0.1)
    raise NotReadyError(f"the daemon was not ready after {timeout:.0f} s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
