"""``appliance demo``: start the daemon on the embedded models and show them answering.

The first thing a new user runs. It starts ``appliance serve`` as a child process on a
free loopback port, calls it with ``tritonclient`` (the same client a clinical
application would use), prints the answer for a few tumours from the held-out data
shipped with the classifier, streams a completion from the embedded clinical language
model over ``ModelStreamInfer`` (Triton's decoupled streaming, as its vLLM clients use
it), and stops the daemon with SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from appliance.errors import InferenceError, NotReadyError

MODEL = "breast_cancer"
LM = "clinical_lm"
#: The opening the language model continues, and how far (greedy: the same every run).
LM_PROMPT = "Patient reports"
LM_TOKENS = 40


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="serve the embedded models and show a prediction and a streamed completion",
        description="Start the daemon on the embedded models, ask the breast-cancer "
        "classifier for predictions and the clinical language model for a streamed "
        "completion with tritonclient, print them, stop the daemon.",
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
        _stream_completion(console, address)
    finally:
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=30)
    if child.returncode != 0:
        console.print(stderr)
        return 1
    console.print("daemon drained and stopped (exit 0)")
    return 0


def _stream_completion(console: Any, address: str) -> None:
    """The language model's continuation of ``LM_PROMPT``, printed piece by piece as the
    stream delivers it."""
    import tritonclient.grpc as triton

    events: queue.Queue[tuple[Any, Any]] = queue.Queue()
    console.print(f"\n[bold]{LM}[/] streaming over ModelStreamInfer at {address}:")
    console.print(LM_PROMPT, style="bold", end="")
    with triton.InferenceServerClient(address) as client:
        client.start_stream(callback=lambda result, error: events.put((result, error)))
        try:
            client.async_stream_infer(
                LM, _lm_inputs(), request_id="demo", enable_empty_final_response=True
            )
            while True:
                result, error = events.get(timeout=120)
                if error is not None:
                    raise InferenceError(f"the streamed completion failed: {error}")
                text = result.as_numpy("text_output")
                if text is not None and text.size:
                    console.print(text.reshape(-1)[0].decode(), end="", highlight=False)
                if result.get_response().parameters["triton_final_response"].bool_param:
                    break
        finally:
            client.stop_stream()
    console.print()


def _lm_inputs() -> list[Any]:
    """The tensors of Triton's vLLM backend: the prompt, its sampling, stream on."""
    import numpy as np
    import tritonclient.grpc as triton

    sampling = json.dumps({"max_tokens": LM_TOKENS, "temperature": 0})
    tensors = []
    for name, datatype, value in (
        ("text_input", "BYTES", np.array([LM_PROMPT.encode()], dtype=np.object_)),
        ("sampling_parameters", "BYTES", np.array([sampling.encode()], dtype=np.object_)),
        ("stream", "BOOL", np.array([True])),
    ):
        tensor = triton.InferInput(name, [1], datatype)
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    return tensors


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
