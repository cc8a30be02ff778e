"""Run a command as another local user (``setpriv``), for attacks by a second uid.

Tests run as root on the box; an operator or an unprivileged user is played by a real
second uid through ``setpriv --reuid --regid``. The interpreter must be one that uid
can run: this venv's when it is readable by others, else the system's Python of the
same version with this venv's packages and the checkout on ``PYTHONPATH``.
``shared_folder`` makes a folder both the daemon (root) and that user can reach.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOBODY = 65534


def _setpriv(uid: int, gid: int, groups: Sequence[int]) -> list[str]:
    group_args = [f"--groups={','.join(map(str, groups))}"] if groups else ["--clear-groups"]
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", *group_args]


def _environment(home: Path) -> dict[str, str]:
    paths = [str(ROOT), *site.getsitepackages()]
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "PYTHONPATH": os.pathsep.join(paths),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _interpreters() -> list[str]:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    found = [sys.executable, shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")]
    return [p for p in found if p]


_FOUND: dict[int, str] = {}


def python_for(uid: int, home: Path) -> str:
    """An interpreter ``uid`` can run that imports this checkout; skips if there is none."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as a second local user")
    if uid in _FOUND:
        return _FOUND[uid]
    for python in _interpreters():
        probe = [*_setpriv(uid, uid, []), python, "-c", "import grpc, appliance.cli"]
        result = subprocess.run(
            probe, env=_environment(home), cwd=home, capture_output=True, check=False
        )
        if result.returncode == 0:
            _FOUND[uid] = python
            return python
    pytest.skip(f"no Python interpreter that uid {uid} may run imports this checkout")


def run_as(
    uid: int, gid: int, groups: Sequence[int], args: Sequence[str], home: Path
) -> subprocess.CompletedProcess[str]:
    """``python -m appliance ARGS`` as ``uid``:``gid`` with supplementary ``groups``."""
    command = [*_setpriv(uid, gid, groups), python_for(uid, home), "-m", "appliance", *args]
    return subprocess.run(
        command,
        env=_environment(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def shared_folder() -> Path:
    """A fresh folder any local user may traverse (mode 0711), removed by the caller."""
    folder = Path(tempfile.mkdtemp(prefix="appliance-shared-"))
    folder.chmod(0o711)
    return folder


__all__ = ["NOBODY", "python_for", "run_as", "shared_folder"]
