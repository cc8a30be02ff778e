"""Crash safety: the daemon is killed at each step of a push and activation, then restarted.

A test-only fault point (``APPLIANCE_FAULT_POINT``) makes the daemon exit 137 at that
step with no cleanup, as ``kill -9`` would. After a restart: a complete version serves
(the old one, or the new one once the switch was recorded), nothing partial is left in
the repository or staging, every audit line is whole JSON, and the box takes the update.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.errors import ApplianceError
from appliance.lifecycle import FAULT_ENV_VAR, FAULT_POINTS
from appliance.package import verify_package
from tests._daemon import DaemonProcess
from tests.lifecycle.conftest import MODEL, Packages, admin, daemon_config, infer_version

KILLED = 137


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_killed_at_each_step_restarts_clean(point: str, packages: Packages, tmp_path: Path) -> None:
    config = daemon_config(packages, tmp_path)
    package = packages.build(2)
    crashing = DaemonProcess(tmp_path, config, env={FAULT_ENV_VAR: point}).start()
    try:
        with admin(crashing) as client, pytest.raises(ApplianceError):
            client.push(package, activate=True)
        assert crashing.process is not None
        assert crashing.process.wait(30) == KILLED
    finally:
        crashing.stop()

    switched = FAULT_POINTS.index(point) >= FAULT_POINTS.index("after_record")
    with DaemonProcess(tmp_path, config) as daemon:
        assert infer_version(daemon) == ("2" if switched else "1")
        _assert_nothing_partial(tmp_path / "repository", packages)
        _assert_audit_whole(tmp_path / "audit.jsonl")

        # The box takes the update after the crash.
        with admin(daemon) as client:
            if (tmp_path / "repository" / MODEL / "2").is_dir():
                client.activate(MODEL, 2)
            else:
                client.push(package, activate=True)
        assert infer_version(daemon) == "2"


def _assert_nothing_partial(repository: Path, packages: Packages) -> None:
    staging = repository / ".staging"
    assert not staging.exists() or list(staging.iterdir()) == []
    versions = repository / MODEL
    for folder in versions.iterdir() if versions.exists() else ():
        verify_package(folder, [packages.public])  # complete and untouched, or raises
    assert not [p for p in repository.iterdir() if ".tmp-" in p.name]


def _assert_audit_whole(path: Path) -> None:
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        json.loads(line)
