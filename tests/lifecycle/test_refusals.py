"""Packages the box must refuse, and the model it serves meanwhile, untouched.

Each refused push exits 3 with the reason on stderr, leaves nothing in the repository
or staging, keeps version 1 answering, and is in the audit log as refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._daemon import DaemonProcess
from tests.lifecycle.conftest import (
    MODEL,
    Packages,
    audit_lines,
    cli,
    daemon_config,
    infer_version,
    member,
    rewrite_package,
)

REFUSED = 3


@pytest.fixture(scope="module")
def shared_daemon(
    packages: Packages, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    work = tmp_path_factory.mktemp("refusals")
    with DaemonProcess(work, daemon_config(packages, work)) as d:
        yield d


def _flip_model_byte(packages: Packages, out: Path) -> Path:
    good = packages.build(5)
    onnx = bytearray(member(good, "model.onnx"))
    onnx[len(onnx) // 2] ^= 0x01
    return rewrite_package(good, out, {"model.onnx": bytes(onnx)})


def _change_manifest(packages: Packages, out: Path) -> Path:
    good = packages.build(5)
    manifest = json.loads(member(good, "model.json"))
    manifest["labels"] = ["benign", "malignant"]
    return rewrite_package(good, out, {"model.json": json.dumps(manifest).encode()})


def _other_key(packages: Packages, out: Path) -> Path:
    signed = packages.build(6, key=packages.other_private)
    return rewrite_package(signed, out, {})


def _unsigned(packages: Packages, out: Path) -> Path:
    return rewrite_package(packages.build(5), out, {"model.sig": None})


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_flip_model_byte, "tampered"),
        (_change_manifest, "tampered"),
        (_other_key, "not made by a trusted key"),
        (_unsigned, "unsigned"),
    ],
    ids=["flipped-byte-in-model", "changed-model-json", "other-key", "unsigned"],
)
def test_bad_package_is_refused_and_serving_is_untouched(
    shared_daemon: DaemonProcess, packages: Packages, tmp_path: Path, make: object, reason: str
) -> None:
    package = make(packages, tmp_path / "bad.apkg")  # type: ignore[operator]
    result = cli(shared_daemon, "models", "push", str(package), "--activate")
    assert result.returncode == REFUSED, result.stderr
    assert reason in result.stderr
    assert infer_version(shared_daemon) == "1"
    repository = shared_daemon.workdir / "repository"
    assert not (repository / MODEL).exists()
    assert list((repository / ".staging").iterdir()) == []
    last = audit_lines(shared_daemon)[-1]
    assert last["event"] == "admin.push"
    assert last["outcome"] == "refused"
    assert reason in last["reason"]
    assert last["digest"].startswith("sha256:")
    assert last["caller"].startswith("uid:")


def test_failing_self_test_is_refused_and_old_version_serves(
    shared_daemon: DaemonProcess, packages: Packages
) -> None:
    package = packages.build(7, bad_golden=True)
    result = cli(shared_daemon, "models", "push", str(package), "--activate")
    assert result.returncode == REFUSED, result.stderr
    assert "golden case 0" in result.stderr
    assert "expected within rtol" in result.stderr
    assert infer_version(shared_daemon) == "1"
    assert not (shared_daemon.workdir / "repository" / MODEL / "7").exists()
    listing = json.loads(cli(shared_daemon, "models", "list", "--json").stdout)
    assert [v["version"] for v in listing[0]["versions"]] == ["1"]


def test_truncated_upload_is_refused(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    from appliance.admin import AdminClient, AdminTarget
    from appliance.errors import PackageError

    package = tmp_path / "cut.apkg"
    package.write_bytes(b"not a tar archive at all")
    target = AdminTarget(str(shared_daemon.workdir / "admin.sock"))
    with AdminClient(target) as client, pytest.raises(PackageError, match="expected"):
        client.push(package, activate=True)
    assert infer_version(shared_daemon) == "1"


def test_a_repository_that_cannot_be_written_fails_the_push_clearly(
    packages: Packages, tmp_path: Path
) -> None:
    # A file where the staging folder belongs: the daemon serves, but cannot stage.
    # (A read-only mount, the usual cause, gives the same error with "Read-only file
    # system"; creating one needs privileges a test cannot count on.)
    (tmp_path / "repository").mkdir()
    (tmp_path / "repository" / ".staging").write_text("in the way")
    with DaemonProcess(tmp_path, daemon_config(packages, tmp_path)) as daemon:
        result = cli(daemon, "models", "push", str(packages.build(2)), "--activate")
        assert result.returncode != 0
        assert "cannot be written (Not a directory" in result.stderr, result.stderr
        assert "need a writable repository.path" in result.stderr
        assert "internal error" not in result.stderr
        assert infer_version(daemon) == "1"
        last = audit_lines(daemon)[-1]
        assert (last["event"], last["outcome"]) == ("admin.push", "failed")
        assert "cannot be written" in last["reason"]
