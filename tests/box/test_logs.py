"""Logs are JSON lines with the request's shape of things, never its contents."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from tests.box.conftest import BoxDaemon, infer_affine

# Values a clinician would recognise as a patient's: they must appear in no log line.
PATIENT = np.array([[3141.5927, 2718.2817, 1618.0339, 1414.2135]], dtype=np.float32)


def leaks(data: np.ndarray, text: bytes) -> list[str]:
    """The forms in which tensor bytes could reach a log, and which ones did."""
    raw = data.tobytes()
    forms = {
        "raw bytes": raw,
        "hex": raw.hex().encode(),
        "base64": base64.b64encode(raw),
        "repr of the array": repr(data).encode(),
    }
    forms.update({f"value {v}": f"{v:.2f}".encode() for v in data.ravel().tolist()})
    return [name for name, needle in forms.items() if needle in text]


def test_request_lines_carry_shapes_and_callers_but_never_tensor_contents(tmp_path: Path) -> None:
    daemon = BoxDaemon(tmp_path, {})
    with daemon, triton.InferenceServerClient(daemon.address) as client:
        y = infer_affine(client, PATIENT)
        wrong_shape = np.concatenate([PATIENT, PATIENT[:, :1]], axis=1)  # (1, 5)
        with pytest.raises(InferenceServerException):
            infer_affine(client, wrong_shape)
        wrong_dtype = triton.InferInput("x", [1, 4], "FP64")
        wrong_dtype.set_data_from_numpy(PATIENT.astype(np.float64))
        with pytest.raises(InferenceServerException):
            client.infer("affine", [wrong_dtype])
    # Everything the daemon wrote: its log, the audit file, whatever else appeared.
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "repository" not in p.parts[-4:]]
    assert daemon.log_path in written
    text = b"".join(p.read_bytes() for p in written if p.suffix != ".toml")
    for sent in (PATIENT, wrong_shape, PATIENT.astype(np.float64), y):
        assert leaks(sent, text) == []

    records = daemon.log_records()  # every line parses as JSON
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    infers = [r for r in records if r.get("rpc") == "ModelInfer"]
    assert [r["status"] for r in infers] == ["OK", "INVALID_ARGUMENT", "INVALID_ARGUMENT"]
    ok = infers[0]
    assert ok["model"] == "affine" and ok["version"] == "1"
    assert ok["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [1, 4]}]
    assert ok["caller"] == "anonymous" and ok["peer"].startswith("ipv")
    assert ok["latency_ms"] > 0
    assert infers[1]["inputs"][0]["shape"] == [1, 5]
    assert infers[2]["inputs"][0]["datatype"] == "FP64"
