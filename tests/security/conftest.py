"""The attacker's side: another local uid, and a daemon it can reach as a local user would.

Tests run as root; the attacker runs as uid and gid 65534 (``nobody``) with no
supplementary groups, through ``setpriv``, executing ``_intruder.py``. The daemon's work
folder is made where that user can enter and list it (mode 0755, wider than a box's
``/run/appliance`` at 0750, and outside pytest's private 0700 folder), so what stops an
attack is the daemon's own protection, never a folder the attacker could not reach.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._daemon import daemon_environment

NOBODY = 65534
INTRUDER = Path(__file__).with_name("_intruder.py")


def start_as_nobody(attack: str, job: dict[str, Any]) -> subprocess.Popen[str]:
    """Start one attack of ``_intruder.py`` as uid 65534; ``outcome`` reads its report."""
    if os.geteuid() != 0:
        pytest.skip("running the attacker as another uid (setpriv) needs root")
    command = [
        "setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        sys.executable,
        str(INTRUDER),
        attack,
        json.dumps(job),
    ]
    env = {**daemon_environment(), "HOME": "/", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd="/"
    )


def outcome(attacker: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    stdout, stderr = attacker.communicate(timeout=timeout)
    assert attacker.returncode == 0, stderr
    reported: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    assert reported["uid"] == NOBODY
    return reported


def as_nobody(attack: str, job: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    """Run one attack as uid 65534 to its end and return what it reported."""
    return outcome(start_as_nobody(attack, job), timeout)


@pytest.fixture
def visible_workdir() -> Iterator[Path]:
    """A daemon work folder any local user can enter and list (as /run/appliance is)."""
    folder = Path(tempfile.mkdtemp(prefix="appliance-hostile-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
