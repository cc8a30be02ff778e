"""Fixtures for lifecycle tests: signed packages of real models, a daemon, the admin CLI.

Packages are built with ``appliance.package`` from the embedded breast-cancer model, so
every version computes the same thing and golden cases made on this box pass here;
``bad_golden`` makes one whose expected outputs are off, to fail the on-box self-test.
Tampered packages are real archives with one byte or one field changed after signing.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton

from appliance.package import (
    Golden,
    GoldenCase,
    Manifest,
    TensorData,
    build_package,
    generate_keypair,
    make_golden,
    specs_from_onnx,
)
from appliance.repository import EMBEDDED_ROOT
from tests._daemon import DaemonProcess

MODEL = "breast_cancer"
DEFAULT_ONNX = EMBEDDED_ROOT / MODEL / "1" / "model.onnx"
FEATURES = 30


class Packages:
    """Builds signed ``breast_cancer`` packages into a folder."""

    def __init__(self, root: Path):
        self.root = root
        self.private, self.public = generate_keypair(root / "keys")
        self.other_private, _ = generate_keypair(root / "other-keys")
        self._golden = make_golden(DEFAULT_ONNX)

    def build(self, version: int, *, key: Path | None = None, bad_golden: bool = False) -> Path:
        inputs, outputs = specs_from_onnx(DEFAULT_ONNX)
        golden = _off_by_one(self._golden) if bad_golden else self._golden
        manifest = Manifest(
            name=MODEL, version=version, inputs=inputs, outputs=outputs, golden=golden
        )
        out = self.root / ("bad" if bad_golden else "good") / f"{MODEL}-{version}.apkg"
        out.parent.mkdir(parents=True, exist_ok=True)
        return build_package(DEFAULT_ONNX, manifest, key or self.private, out)


def _off_by_one(golden: Golden) -> Golden:
    """The same cases with every expected output moved by 1: no box can match them."""
    cases = [
        GoldenCase(
            inputs=case.inputs,
            outputs={
                name: TensorData(datatype=t.datatype, shape=t.shape, data=[v + 1.0 for v in t.data])
                for name, t in case.outputs.items()
            },
        )
        for case in golden.cases
    ]
    return Golden(rtol=golden.rtol, atol=golden.atol, cases=cases)


def rewrite_package(source: Path, target: Path, change: dict[str, bytes | None]) -> Path:
    """Copy a package archive, replacing (bytes) or dropping (None) members by name."""
    with tarfile.open(source) as tar_in, tarfile.open(target, "w") as tar_out:
        for member in tar_in.getmembers():
            if member.name in change and change[member.name] is None:
                continue
            data = change.get(member.name)
            if data is None:
                extracted = tar_in.extractfile(member)
                assert extracted is not None
                data = extracted.read()
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            info.mode = member.mode
            tar_out.addfile(info, io.BytesIO(data))
    return target


def member(package: Path, name: str) -> bytes:
    with tarfile.open(package) as tar:
        extracted = tar.extractfile(name)
        assert extracted is not None
        return extracted.read()


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Packages:
    return Packages(tmp_path_factory.mktemp("packages"))


def daemon_config(packages: Packages, workdir: Path, **lifecycle: Any) -> dict[str, Any]:
    return {
        "signing": {"trusted_keys": [str(packages.public)]},
        "lifecycle": {"audit_log": str(workdir / "audit.jsonl"), **lifecycle},
    }


@pytest.fixture
def daemon(packages: Packages, tmp_path: Path) -> Iterator[DaemonProcess]:
    with DaemonProcess(tmp_path, daemon_config(packages, tmp_path)) as d:
        yield d


def cli(
    daemon: DaemonProcess, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``appliance ARGS --admin SOCKET`` as an operator would."""
    command = [
        sys.executable,
        "-m",
        "appliance",
        *args,
        "--admin",
        str(daemon.workdir / "admin.sock"),
    ]
    return subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=120, env=env
    )


def cli_json(daemon: DaemonProcess, *args: str) -> Any:
    result = cli(daemon, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def rows(n: int, seed: int = 0) -> np.ndarray:
    from sklearn.datasets import load_breast_cancer

    x = load_breast_cancer().data.astype(np.float32)
    return x[np.random.default_rng(seed).choice(len(x), size=n, replace=False)]


def infer_version(daemon: DaemonProcess, x: np.ndarray | None = None) -> str:
    """The version that answers an unversioned request right now."""
    x = rows(2) if x is None else x
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    with triton.InferenceServerClient(daemon.address) as client:
        result = client.infer(MODEL, [tensor])
    return str(result.get_response().model_version)


def audit_lines(daemon: DaemonProcess) -> list[dict[str, Any]]:
    path = daemon.workdir / "audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def admin(daemon: DaemonProcess) -> Any:
    """A real admin client on the daemon's socket, in this process (faster than the CLI)."""
    from appliance.admin import AdminClient, AdminTarget

    return AdminClient(AdminTarget(str(daemon.workdir / "admin.sock")), timeout=120)
