"""Who the admin socket says is calling, under the user namespace the unit sets up.

``PrivateUsers=yes`` (systemd.exec(5)) runs the service in a user namespace that maps
only root and the service's own user; every other uid reads as ``nobody`` inside it,
SO_PEERCRED included, so each operator's action would be audited as ``uid:65534``.
These tests run the real daemon in the user namespace ``packaging/systemd/appliance.service``
implies (``unshare --user --map-root-user`` is that mapping for a daemon running as
root, as here) and call it as a real second uid with ``setpriv``: an operator in the
socket's group, and an unprivileged user outside it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._daemon import DaemonProcess
from tests._local_user import NOBODY, run_as, shared_folder
from tests.box.test_packaging import unit_settings
from tests.lifecycle.conftest import Packages, audit_lines, daemon_config

OPERATOR_UID = 4242
ADMIN_GID = 4243  # stands for the `appliance` group the unit's socket belongs to
PRIVATE_USERS = ["unshare", "--user", "--map-root-user"]
UNAVAILABLE = 5


def unit_user_namespace() -> list[str]:
    """The daemon's command prefix for the unit's user namespace setting."""
    value = unit_settings().get("PrivateUsers", ["no"])[-1]
    return PRIVATE_USERS if value in ("yes", "true", "1", "self", "identity") else []


def _user_namespaces_work() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run([*PRIVATE_USERS, "true"], check=False).returncode == 0


needs_user_namespaces = pytest.mark.skipif(
    not _user_namespaces_work(), reason="needs root and unshare --user"
)


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Packages:
    return Packages(tmp_path_factory.mktemp("packages"))


@pytest.fixture
def shared() -> Iterator[Path]:
    folder = shared_folder()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _admin_daemon(
    packages: Packages, tmp_path: Path, shared: Path, wrapper: list[str]
) -> DaemonProcess:
    config = daemon_config(packages, tmp_path)
    config["admin"] = {"socket": str(shared / "admin.sock")}
    return DaemonProcess(tmp_path, config, wrapper=wrapper)


def _push_as_operator(daemon: DaemonProcess, packages: Packages, shared: Path) -> str:
    """Push as OPERATOR_UID through the socket; return who the audit log names."""
    socket = shared / "admin.sock"
    os.chown(socket, 0, ADMIN_GID)  # as the package's postinst sets up the group
    package = shutil.copy(packages.build(2), shared / "breast_cancer-2.apkg")
    Path(package).chmod(0o644)
    args = ["models", "push", str(package), "--admin", str(socket)]
    result = run_as(OPERATOR_UID, OPERATOR_UID, [ADMIN_GID], args, shared)
    assert result.returncode == 0, result.stderr
    last = audit_lines(daemon)[-1]
    assert (last["event"], last["outcome"]) == ("admin.push", "ok")
    return str(last["caller"])


@needs_user_namespaces
def test_under_the_shipped_unit_the_audit_names_the_operator_and_strangers_stay_out(
    packages: Packages, tmp_path: Path, shared: Path
) -> None:
    with _admin_daemon(packages, tmp_path, shared, unit_user_namespace()) as daemon:
        assert _push_as_operator(daemon, packages, shared) == f"uid:{OPERATOR_UID}"
        before = audit_lines(daemon)
        args = ["models", "list", "--admin", str(shared / "admin.sock")]
        stranger = run_as(NOBODY, NOBODY, [], args, shared)
        assert stranger.returncode == UNAVAILABLE
        assert "could not reach the admin service" in stranger.stderr
        assert audit_lines(daemon) == before  # the kernel refused the connection


@needs_user_namespaces
def test_private_users_would_audit_every_operator_as_nobody(
    packages: Packages, tmp_path: Path, shared: Path
) -> None:
    """Why the unit does without PrivateUsers=: the same push, under that namespace."""
    with _admin_daemon(packages, tmp_path, shared, PRIVATE_USERS) as daemon:
        assert _push_as_operator(daemon, packages, shared) == f"uid:{NOBODY}(nobody)"
