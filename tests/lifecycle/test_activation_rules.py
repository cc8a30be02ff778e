"""Only an audited activation makes a version serve, and only a verified folder loads.

Attacks on a real daemon: pushing an old signed version to be served by number
(``version_policy = "all"``), a version installed without ``--activate`` turning
active at a restart, a ``model.onnx`` replaced in an installed version's folder, and
unsigned Triton-style folders on a box that requires signatures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tritonclient.grpc as triton

from tests._daemon import DaemonProcess
from tests._hostile import replace_file
from tests.lifecycle.conftest import (
    MODEL,
    Packages,
    admin,
    audit_lines,
    cli,
    daemon_config,
    infer_version,
)
from tests.models import affine_model

REFUSED = 3


def _config(packages: Packages, workdir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    config = daemon_config(packages, workdir)
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    return config


def _ready(daemon: DaemonProcess, name: str, version: str = "") -> bool:
    with triton.InferenceServerClient(daemon.address) as client:
        return bool(client.is_model_ready(name, version))


def _activations(daemon: DaemonProcess) -> list[dict[str, Any]]:
    return [e for e in audit_lines(daemon) if e["event"] in ("admin.activate", "admin.rollback")]


def test_an_old_version_is_refused_at_install_so_version_policy_all_cannot_serve_it(
    packages: Packages, tmp_path: Path
) -> None:
    config = _config(packages, tmp_path, repository={"version_policy": "all"})
    with DaemonProcess(tmp_path, config) as daemon:
        with admin(daemon) as client:
            client.push(packages.build(3), activate=True)
        replayed = cli(daemon, "models", "push", str(packages.build(2)))
        assert replayed.returncode == REFUSED
        assert "below version 3" in replayed.stderr and "--allow-downgrade" in replayed.stderr
        assert not (tmp_path / "repository" / MODEL / "2").exists()
        assert not _ready(daemon, MODEL, "2")
        last = audit_lines(daemon)[-1]
        assert (last["event"], last["outcome"], last["version"]) == ("admin.push", "refused", 2)

        allowed = cli(daemon, "models", "push", str(packages.build(2)), "--allow-downgrade")
        assert allowed.returncode == 0, allowed.stderr
        last = audit_lines(daemon)[-1]
        assert (last["outcome"], last["downgrade"]) == ("ok", True)
        assert infer_version(daemon) == "3"


def test_a_restart_serves_the_recorded_version_and_never_one_nobody_activated(
    packages: Packages, tmp_path: Path
) -> None:
    with DaemonProcess(tmp_path, daemon_config(packages, tmp_path)) as daemon:
        with admin(daemon) as client:
            client.push(packages.build(2))  # installed only: the embedded 1 serves
        assert infer_version(daemon) == "1"
    with DaemonProcess(tmp_path, daemon_config(packages, tmp_path)) as daemon:
        assert infer_version(daemon) == "1"
        assert _activations(daemon) == []
        with admin(daemon) as client:
            client.push(packages.build(3), activate=True)
            client.push(packages.build(4))  # installed, not active
            client.rollback(MODEL)  # to the version before 3: the embedded 1
        assert infer_version(daemon) == "1"

    # With every version loaded the default is still the recorded one, not the highest.
    config = _config(packages, tmp_path, repository={"version_policy": "all"})
    with DaemonProcess(tmp_path, config) as daemon:
        assert infer_version(daemon) == "1"
        assert _ready(daemon, MODEL, "4")  # installed versions answer by number
        state = json.loads((tmp_path / "repository" / ".lifecycle.json").read_text())
        assert state["models"][MODEL]["active"] == 1


def test_a_replaced_model_file_is_refused_at_start_and_the_last_good_version_serves(
    packages: Packages, tmp_path: Path
) -> None:
    config = daemon_config(packages, tmp_path)
    with DaemonProcess(tmp_path, config) as daemon, admin(daemon) as client:
        client.push(packages.build(2), activate=True)
        client.push(packages.build(3), activate=True)
    # An intruder with write access to the repository swaps the model of version 3.
    intruder = affine_model(tmp_path / "intruder.onnx")
    replace_file(tmp_path / "repository" / MODEL / "3" / "model.onnx", intruder)

    with DaemonProcess(tmp_path, config) as daemon:
        assert infer_version(daemon) == "2"
        assert "version 3 refused at load" in daemon.log_text()
        refused = [e for e in audit_lines(daemon) if e["event"] == "load.refused"]
        assert [(e["model"], e["version"], e["outcome"]) for e in refused] == [
            (MODEL, 3, "refused")
        ]
        assert "tampered: model.onnx: expected sha256" in refused[0]["reason"]
        # The record still names 3: the operator decides, and activating 2 records it.
        activated = cli(daemon, "models", "activate", MODEL, "2", "--allow-downgrade")
        assert activated.returncode == 0, activated.stderr
        state = json.loads((tmp_path / "repository" / ".lifecycle.json").read_text())
        assert state["models"][MODEL]["active"] == 2


@pytest.mark.parametrize("require_signed", [True, False])
def test_require_signed_refuses_unsigned_triton_style_folders(
    packages: Packages, tmp_path: Path, require_signed: bool
) -> None:
    affine_model(tmp_path / "repository" / "affine" / "1" / "model.onnx")
    config = _config(packages, tmp_path, signing={"require_signed": require_signed})
    with DaemonProcess(tmp_path, config) as daemon:
        assert _ready(daemon, "affine") is not require_signed
        if require_signed:
            with triton.InferenceServerClient(daemon.address) as client:
                (entry,) = [m for m in client.get_model_repository_index().models]
            assert entry.name == "affine" and entry.state == "UNAVAILABLE"
            assert "unsigned folder refused (signing.require_signed)" in entry.reason
            assert [e["event"] for e in audit_lines(daemon)] == ["load.refused"]
