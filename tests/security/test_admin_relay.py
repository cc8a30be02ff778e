"""Admin impersonation: a local user tries every way into the admin service.

While an operator's upload is open on the admin socket, an unprivileged user (another
uid) lists every loopback TCP port and every Unix socket of the daemon, and calls the
admin service's List on each: directly, and from 127.0.0.2 bound to the source port of
each open loopback connection (which fooled the relay that trusted source ports). None
answers: the admin service has no TCP port at all, its gRPC socket sits in a folder only
the daemon can enter, and the admin socket's mode keeps others out. The control: once
the socket's group is the user's, the same attack is answered, so the test can tell.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psutil

from appliance._proto import admin_pb2, admin_pb2_grpc
from appliance._proto import grpc_service_pb2 as pb
from appliance._proto import grpc_service_pb2_grpc as pb_grpc
from tests._daemon import DaemonProcess
from tests.security.conftest import NOBODY, as_nobody


def admin_daemon(workdir: Path) -> DaemonProcess:
    return DaemonProcess(workdir, {"lifecycle": {"audit_log": str(workdir / "audit.jsonl")}})


def _listening_ports(daemon: DaemonProcess) -> set[int]:
    assert daemon.process is not None
    connections = psutil.Process(daemon.process.pid).net_connections(kind="inet")
    return {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN}


def _held_upload(release: threading.Event) -> Iterator[admin_pb2.UploadRequest]:
    header = admin_pb2.UploadHeader(filename="breast_cancer-9.apkg", total_size=1 << 20)
    yield admin_pb2.UploadRequest(header=header)
    release.wait(120)  # the operator's push stays open while the attacker looks around


def test_no_local_user_reaches_the_admin_service_while_an_operator_call_is_open(
    visible_workdir: Path,
) -> None:
    with admin_daemon(visible_workdir) as daemon:
        socket_path = visible_workdir / "admin.sock"
        release = threading.Event()
        with (
            grpc.insecure_channel(f"unix:{socket_path}") as channel,
            daemon.channel() as inference,  # an open loopback connection to borrow from
        ):
            pb_grpc.GRPCInferenceServiceStub(inference).ServerLive(  # type: ignore[no-untyped-call]
                pb.ServerLiveRequest(), timeout=30
            )
            stub = admin_pb2_grpc.AdminStub(channel)  # type: ignore[no-untyped-call]
            assert stub.List(admin_pb2.ListRequest(), timeout=30).models  # the door works
            upload = stub.Upload.future(_held_upload(release), timeout=120)
            listening = _listening_ports(daemon)
            job = {"ports": sorted(listening), "roots": [str(visible_workdir)]}
            try:
                report = as_nobody("admin", job)
            finally:
                release.set()
            with contextlib.suppress(grpc.RpcError):  # the push was cut short: no matter
                upload.result(timeout=60)
    tried: dict[str, str] = report["tried"]
    assert report["answers"] == {}, report
    # The attacker saw the inference port and the admin socket and tried both.
    assert f"tcp 127.0.0.1:{daemon.port}" in tried
    assert any(f"tcp 127.0.0.1:{daemon.port} from 127.0.0.2:" in k for k in tried), tried
    assert tried[f"unix {socket_path}"] == "no connection: Permission denied"
    # The admin gRPC server's own socket and the relay's paths: in a folder it cannot enter.
    private = [k for k in tried if "/.admin-" in k]
    assert private and all(tried[k] == "no connection: Permission denied" for k in private)
    # And no TCP port of the daemon is the admin service's.
    assert listening == {daemon.port, daemon.metrics_port, daemon.http_port}
    audit = (visible_workdir / "audit.jsonl").read_text()
    assert f"uid:{NOBODY}" not in audit


def test_the_socket_mode_decides_who_administers(visible_workdir: Path) -> None:
    """The control: in the socket's group, the same user's attack is answered."""
    with admin_daemon(visible_workdir) as daemon:
        socket_path = visible_workdir / "admin.sock"
        os.chown(socket_path, -1, NOBODY)
        job = {"ports": sorted(_listening_ports(daemon)), "roots": [str(socket_path)]}
        report: dict[str, Any] = as_nobody("admin", job)
        assert daemon.process is not None and daemon.process.poll() is None
    assert report["answers"] == {f"unix {socket_path}": "ANSWERED: breast_cancer,clinical_lm"}
