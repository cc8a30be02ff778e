"""Stalled, cancelled and interrupted admin calls against a real daemon.

A client that stops sending is refused after ``lifecycle.upload_idle_timeout_s``; a
push cancelled mid-upload is audited and leaves nothing in staging; a push or an
activation cancelled while its change is half done (the state record being written,
held there by a test-only pause point) is finished anyway, so the record and what the
daemon serves agree without a restart.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from appliance._proto import admin_pb2 as pb
from appliance._proto import admin_pb2_grpc as pb_grpc
from appliance.lifecycle import PAUSE_ENV_VAR
from tests._daemon import DaemonProcess
from tests.lifecycle.conftest import (
    MODEL,
    Packages,
    admin,
    audit_lines,
    daemon_config,
    infer_version,
)

PAUSE = "before_record"


def _eventually(what: str, check: Callable[[], bool], timeout: float = 90.0) -> None:
    """Wait for an event (not a timing assert): fail only if it never comes."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def _stub(daemon: DaemonProcess) -> tuple[grpc.Channel, Any]:
    channel = grpc.insecure_channel(f"unix:{daemon.workdir / 'admin.sock'}")
    return channel, pb_grpc.AdminStub(channel)  # type: ignore[no-untyped-call]


def _upload(
    package: Path, *, activate: bool, hold: threading.Event | None = None
) -> Iterator[pb.UploadRequest]:
    """The CLI's messages; with ``hold``, nothing after the first half until it is set."""
    data = package.read_bytes()
    header = pb.UploadHeader(filename=package.name, total_size=len(data), activate=activate)
    yield pb.UploadRequest(header=header)
    yield pb.UploadRequest(chunk=data[: len(data) // 2])
    if hold is not None:
        hold.wait(120)
    yield pb.UploadRequest(chunk=data[len(data) // 2 :])


def _staged(daemon: DaemonProcess) -> list[Path]:
    staging = daemon.workdir / "repository" / ".staging"
    return sorted(staging.iterdir()) if staging.is_dir() else []


def _last_push(daemon: DaemonProcess) -> dict[str, Any] | None:
    pushes = [e for e in audit_lines(daemon) if e["event"] == "admin.push"]
    return pushes[-1] if pushes else None


def test_a_stalled_upload_is_refused_and_its_staging_removed(
    packages: Packages, tmp_path: Path
) -> None:
    config = daemon_config(packages, tmp_path, upload_idle_timeout_s=2.0)
    with DaemonProcess(tmp_path, config) as daemon:
        channel, stub = _stub(daemon)
        hold = threading.Event()
        with channel, pytest.raises(grpc.RpcError) as refused:
            stub.Upload(_upload(packages.build(2), activate=True, hold=hold), timeout=120)
        hold.set()
        assert refused.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert "stalled, nothing arrived for 2 s" in (refused.value.details() or "")
        assert _staged(daemon) == []
        assert infer_version(daemon) == "1"
        last = _last_push(daemon)
        assert last is not None and last["outcome"] == "refused"
        assert "upload_idle_timeout_s" in last["reason"]


@pytest.fixture(scope="module")
def paused_daemon(
    packages: Packages, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    """A daemon whose activations wait at ``before_record`` until the test releases them."""
    work = tmp_path_factory.mktemp("paused")
    pause = work / "pause"
    pause.mkdir()
    env = {PAUSE_ENV_VAR: f"{PAUSE}:{pause}"}
    with DaemonProcess(work, daemon_config(packages, work), env=env) as daemon:
        yield daemon


def test_a_push_cancelled_mid_upload_is_audited_and_leaves_nothing(
    paused_daemon: DaemonProcess, packages: Packages
) -> None:
    channel, stub = _stub(paused_daemon)
    hold = threading.Event()
    with channel:
        call = stub.Upload.future(_upload(packages.build(2), activate=True, hold=hold))
        _eventually("half the package staged", lambda: bool(_staged(paused_daemon)))
        call.cancel()
        hold.set()
        _eventually("the push audited", lambda: _last_push(paused_daemon) is not None)
    last = _last_push(paused_daemon)
    assert last is not None
    assert (last["outcome"], last["caller"][:4]) == ("cancelled", "uid:")
    assert "cancelled" in last["reason"]
    assert _staged(paused_daemon) == []
    assert infer_version(paused_daemon) == "1"


def _state(daemon: DaemonProcess) -> dict[str, Any]:
    raw = json.loads((daemon.workdir / "repository" / ".lifecycle.json").read_text())
    record: dict[str, Any] = raw["models"][MODEL]
    return record


def _cancel_at_the_record(daemon: DaemonProcess, call: grpc.Future) -> None:
    """Cancel ``call`` while the daemon is about to write the state record, then let it go."""
    pause = daemon.workdir / "pause"
    _eventually("the change reached the record", (pause / f"{PAUSE}.reached").exists)
    call.cancel()
    _eventually(
        "the daemon noticed the cancel",
        lambda: "the caller cancelled during the change" in daemon.log_text(),
    )
    (pause / f"{PAUSE}.release").touch()


def _reset_pause(daemon: DaemonProcess) -> None:
    for name in (f"{PAUSE}.reached", f"{PAUSE}.release"):
        (daemon.workdir / "pause" / name).unlink(missing_ok=True)


@pytest.mark.parametrize("rpc", ["push", "activate"])
def test_a_cancel_during_the_switch_leaves_record_and_serving_agreeing(
    paused_daemon: DaemonProcess, packages: Packages, rpc: str
) -> None:
    version = {"push": 3, "activate": 4}[rpc]
    _reset_pause(paused_daemon)
    channel, stub = _stub(paused_daemon)
    with channel:
        if rpc == "push":
            call = stub.Upload.future(_upload(packages.build(version), activate=True))
        else:
            with admin(paused_daemon) as client:
                client.push(packages.build(version))  # installed; no switch, no pause
            call = stub.Activate.future(pb.ActivateRequest(name=MODEL, version=version))
        _cancel_at_the_record(paused_daemon, call)
        event = f"admin.{rpc}"
        _eventually(
            f"{event} audited",
            lambda: any(
                e["event"] == event and e.get("version") == version
                for e in audit_lines(paused_daemon)
            ),
        )
    entry = [e for e in audit_lines(paused_daemon) if e["event"] == event][-1]
    assert entry["outcome"] == "ok", entry
    assert "cancelled during the change; completed" in entry["note"]
    # The record says `version`, and so does the daemon, before any restart.
    assert _state(paused_daemon)["active"] == version
    assert infer_version(paused_daemon) == str(version)
    with admin(paused_daemon) as client:
        (model,) = client.list(MODEL).models
    assert model.active_version == version
