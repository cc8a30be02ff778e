"""Packages the box must refuse, and the model it serves meanwhile, untouched.

Each refused push exits 3 with the reason on stderr, leaves nothing in the repository
or staging, keeps version 1 answering, and is in the audit log as refused. The hostile
ones are built as an attacker would (``tests._hostile``) and signed with the box's
trusted key where that matters, so only the check under test stands in the way: GNU
sparse members that would expand to 512 MiB, external data pointing at
``/etc/passwd``, a manifest whose shapes are not the graph's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._daemon import DaemonProcess
from tests._hostile import (
    TRAVERSAL,
    gnu_sparse_package,
    leaky_package,
    pax_sparse_package,
    resigned_package,
)
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


def _gnu_sparse_bomb(packages: Packages, out: Path) -> Path:
    return gnu_sparse_package(packages.build(5), out)


def _pax_sparse_bomb(packages: Packages, out: Path) -> Path:
    return pax_sparse_package(packages.build(5), out)


def _reads_etc_passwd(packages: Packages, out: Path) -> Path:
    return leaky_package(TRAVERSAL, packages.private, out)


def _reads_etc_passwd_absolute(packages: Packages, out: Path) -> Path:
    return leaky_package("/etc/passwd", packages.private, out)


def _reads_etc_passwd_sparse(packages: Packages, out: Path) -> Path:
    return leaky_package(TRAVERSAL, packages.private, out, sparse=True)


def _wrong_input_shape(packages: Packages, out: Path) -> Path:
    def widen(folder: Path) -> None:
        manifest = json.loads((folder / "model.json").read_text())
        manifest["inputs"][0]["shape"] = [-1, 31]
        (folder / "model.json").write_text(json.dumps(manifest))

    return resigned_package(packages.build(5), packages.private, out, widen)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_flip_model_byte, "tampered"),
        (_change_manifest, "tampered"),
        (_other_key, "not made by a trusted key"),
        (_unsigned, "unsigned"),
        (_gnu_sparse_bomb, "sparse member claiming 536870912 bytes"),
        (_pax_sparse_bomb, "sparse member claiming 536870912 bytes"),
        (_reads_etc_passwd, "external data location '../../../"),
        (_reads_etc_passwd_absolute, "external data location '/etc/passwd'"),
        (_reads_etc_passwd_sparse, "sparse initializer 'W' (values): external data location"),
        (_wrong_input_shape, "'input' has shape [-1, 31]; expected [-1, 30]"),
    ],
    ids=[
        "flipped-byte-in-model",
        "changed-model-json",
        "other-key",
        "unsigned",
        "gnu-sparse-bomb",
        "pax-sparse-bomb",
        "external-data-traversal",
        "external-data-absolute",
        "external-data-sparse-initializer",
        "manifest-shape-not-the-graphs",
    ],
)
def test_bad_package_is_refused_and_serving_is_untouched(
    shared_daemon: DaemonProcess, packages: Packages, tmp_path: Path, make: object, reason: str
) -> None:
    package = make(packages, tmp_path / "bad.apkg")  # type: ignore[operator]
    result = cli(shared_daemon, "models", "push", str(package), "--activate")
    assert result.returncode == REFUSED, result.stderr
    assert reason in result.stderr
    assert "\\x" not in result.stderr  # digests and names as text, never raw bytes
    assert infer_version(shared_daemon) == "1"
    repository = shared_daemon.workdir / "repository"
    assert [p.name for p in repository.iterdir() if not p.name.startswith(".")] == []
    assert list((repository / ".staging").iterdir()) == []
    last = audit_lines(shared_daemon)[-1]
    assert last["event"] == "admin.push"
    assert last["outcome"] == "refused"
    assert reason in last["reason"]
    assert last["digest"].startswith("sha256:")
    assert last["caller"].startswith("uid:")


def test_the_tamper_refusal_names_the_file_and_short_hex_digests(
    shared_daemon: DaemonProcess, packages: Packages, tmp_path: Path
) -> None:
    package = _flip_model_byte(packages, tmp_path / "bad.apkg")
    result = cli(shared_daemon, "models", "push", str(package))
    assert result.returncode == REFUSED
    assert re.search(
        r"tampered: model\.onnx: expected sha256 [0-9a-f]{12}\.\.\., got [0-9a-f]{12}\.\.\.",
        result.stderr,
    ), result.stderr
    assert "digest_value" not in result.stderr
    assert "digest_value" not in audit_lines(shared_daemon)[-1]["reason"]


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
