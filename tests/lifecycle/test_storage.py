"""A full repository disk: the push fails with exit 5 and says so; serving goes on.

The daemon runs in a mount namespace of its own (``unshare --mount``) with an 8 KiB
tmpfs as its repository, so the 20 KB package cannot be staged: the real ENOSPC of a
real file system, not a simulated one, and nothing is left mounted after the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests._daemon import DaemonProcess
from tests.lifecycle.conftest import Packages, audit_lines, cli, daemon_config, infer_version

#: README, "Exit codes": unavailable or out of room.
UNAVAILABLE = 5


def _can_mount_in_a_namespace() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "t", "/mnt"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


needs_mount_namespace = pytest.mark.skipif(
    not _can_mount_in_a_namespace(), reason="needs root to mount a tmpfs in a mount namespace"
)


@needs_mount_namespace
def test_a_full_repository_fails_the_push_with_exit_5_and_a_clear_message(
    packages: Packages, tmp_path: Path
) -> None:
    repository = tmp_path / "repository"
    repository.mkdir()
    mount = f'mount -t tmpfs -o size=8k tmpfs "{repository}" && exec "$@"'
    wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh"]
    config = daemon_config(packages, tmp_path)
    with DaemonProcess(tmp_path, config, wrapper=wrapper) as daemon:
        package = packages.build(2)
        assert package.stat().st_size > 8 * 1024
        result = cli(daemon, "models", "push", str(package), "--activate")
        assert result.returncode == UNAVAILABLE, result.stderr
        assert "no space left" in result.stderr and "appliance models remove" in result.stderr
        assert "internal error" not in result.stderr
        assert infer_version(daemon) == "1"
        last = audit_lines(daemon)[-1]
        assert (last["event"], last["outcome"]) == ("admin.push", "failed")
        assert "no space left" in last["reason"]
