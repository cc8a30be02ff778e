"""Activation, rollback, anti-rollback, removal, retention and the listing, end to end."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton

from tests._daemon import DaemonProcess
from tests.lifecycle.conftest import (
    MODEL,
    Packages,
    admin,
    audit_lines,
    cli,
    cli_json,
    daemon_config,
    infer_version,
    rows,
)

REFUSED, NOT_FOUND, UNAVAILABLE = 3, 4, 5


def test_push_activate_rollback_and_anti_rollback(
    daemon: DaemonProcess, packages: Packages
) -> None:
    pushed = cli_json(daemon, "models", "push", str(packages.build(3)), "--activate")
    assert pushed["activated"] is True
    assert pushed["previous_version"] == "1"
    assert infer_version(daemon) == "3"

    # A lower version is refused at install too, unless the operator says so (audited);
    # installed, it still needs the flag to be activated.
    refused_install = cli(daemon, "models", "push", str(packages.build(2)))
    assert refused_install.returncode == REFUSED
    assert "below version 3" in refused_install.stderr
    installed = cli_json(daemon, "models", "push", str(packages.build(2)), "--allow-downgrade")
    assert installed["activated"] is False
    assert infer_version(daemon) == "3"
    install = [e for e in audit_lines(daemon) if e["event"] == "admin.push"][-1]
    assert install["outcome"] == "ok" and install["downgrade"] is True
    refused = cli(daemon, "models", "activate", MODEL, "2")
    assert refused.returncode == REFUSED
    assert "below version 3" in refused.stderr and "--allow-downgrade" in refused.stderr
    refused_push = cli(daemon, "models", "push", str(packages.build(1)), "--activate")
    assert refused_push.returncode == REFUSED  # version 1 is also the embedded one
    assert infer_version(daemon) == "3"

    allowed = cli_json(daemon, "models", "activate", MODEL, "2", "--allow-downgrade")
    assert allowed["version"] == "2" and allowed["previous_version"] == "3"
    assert infer_version(daemon) == "2"
    downgrade = [e for e in audit_lines(daemon) if e.get("downgrade")]
    assert downgrade[-1]["event"] == "admin.activate"
    assert downgrade[-1]["outcome"] == "ok" and downgrade[-1]["version"] == 2

    back = cli_json(daemon, "models", "rollback", MODEL)
    assert back["version"] == "3"
    assert infer_version(daemon) == "3"

    listing = cli_json(daemon, "models", "list", MODEL)[0]
    assert listing["active_version"] == "3"
    assert listing["highest_activated"] == "3"
    active = [v for v in listing["versions"] if v["active"]]
    assert [v["version"] for v in active] == ["3"]
    assert active[0]["digest"].startswith("sha256:")

    events = [e["event"] for e in audit_lines(daemon)]
    assert events.count("admin.push") == 4
    assert "admin.rollback" in events


def test_remove_and_keep_versions(packages: Packages, tmp_path: Path) -> None:
    config = daemon_config(packages, tmp_path, keep_versions=1)
    with DaemonProcess(tmp_path, config) as daemon:
        with admin(daemon) as client:
            for version in (2, 3, 4):
                client.push(packages.build(version), activate=True)
        repository = tmp_path / "repository" / MODEL
        # Active 4, one previous kept (3); 2 pruned.
        assert sorted(p.name for p in repository.iterdir()) == ["3", "4"]

        in_use = cli(daemon, "models", "remove", MODEL, "4")
        assert in_use.returncode == REFUSED and "is active" in in_use.stderr
        missing = cli(daemon, "models", "remove", MODEL, "9")
        assert missing.returncode == NOT_FOUND

        with admin(daemon) as client:
            assert client.rollback(MODEL).version == 3
        nothing = cli(daemon, "models", "rollback", MODEL)
        assert nothing.returncode == NOT_FOUND and "roll back to" in nothing.stderr

        with admin(daemon) as client:
            assert client.remove(MODEL, 4).version == 4
        assert sorted(p.name for p in repository.iterdir()) == ["3"]
        assert infer_version(daemon) == "3"


def test_restart_serves_recorded_version_and_repository_load_unload(
    packages: Packages, tmp_path: Path
) -> None:
    config = {**daemon_config(packages, tmp_path), "server": {"repository_control": True}}
    with DaemonProcess(tmp_path, config) as daemon, admin(daemon) as client:
        client.push(packages.build(3), activate=True)
        client.push(packages.build(4))  # installed, not active
    with DaemonProcess(tmp_path, config) as daemon:
        assert infer_version(daemon) == "3"
        with triton.InferenceServerClient(daemon.address) as client:
            client.unload_model(MODEL)
            assert not client.is_model_ready(MODEL)
            client.load_model(MODEL)
            assert client.is_model_ready(MODEL)
        assert infer_version(daemon) == "3"


def test_status_and_socket(daemon: DaemonProcess, packages: Packages) -> None:
    status = cli_json(daemon, "status")
    assert status["state"] == "ready"
    assert "CPUExecutionProvider" in status["execution_providers"]
    # The embedded models (breast_cancer, clinical_lm) may serve beside it.
    (model,) = [m for m in status["models"] if m["name"] == MODEL]
    assert model["active_version"] == "1"
    assert model["state"] == "READY"
    assert {"request_rate", "latency_p50_ms", "latency_p99_ms", "drift_psi"} <= set(model)
    assert {"cache_hits", "cache_misses"} <= set(status)

    table = cli(daemon, "status")
    assert table.returncode == 0
    assert "daemon ready" in table.stdout and "READY" in table.stdout

    socket_path = daemon.workdir / "admin.sock"
    assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o660


def test_daemon_unreachable_exits_5(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance",
            "models",
            "list",
            "--admin",
            str(tmp_path / "nothing.sock"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == UNAVAILABLE
    assert "could not reach the admin service" in result.stderr


def test_outputs_unchanged_by_switch(daemon: DaemonProcess, packages: Packages) -> None:
    x = rows(4, seed=3)
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    with triton.InferenceServerClient(daemon.address) as client:
        before = client.infer(MODEL, [tensor]).as_numpy("probabilities")
        with admin(daemon) as admin_client:
            admin_client.push(packages.build(2), activate=True)
        after = client.infer(MODEL, [tensor])
    assert after.get_response().model_version == "2"
    assert before is not None
    np.testing.assert_allclose(after.as_numpy("probabilities"), before, rtol=1e-5)
