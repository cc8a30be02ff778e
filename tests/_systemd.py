"""systemd-analyze checks shared by the tests of our two units (daemon and SuperNode)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (apt-get install systemd; .ci/run does)",
)


def analyze_verify(unit: Path) -> subprocess.CompletedProcess[str]:
    """``verify --recursive-errors=yes``: without the flag, warnings still exit 0."""
    return subprocess.run(
        ["systemd-analyze", "verify", "--recursive-errors=yes", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )


def analyze_security(unit: Path, threshold: float) -> subprocess.CompletedProcess[str]:
    """``security --offline=yes``: exits non-zero when exposure exceeds ``threshold``."""
    return subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=yes",
            f"--threshold={round(threshold * 10)}",
            str(unit),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
