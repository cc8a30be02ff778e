"""The admin service on TCP with mutual TLS, driven by the real CLI.

The admin CA is the hospital CA that also issues inference clients' certificates, as on
most boxes. The operator's certificate (listed in ``[[auth.certificates]]`` with the
admin role) reaches the service and is named in the audit log; an inference client's
certificate from the same CA is refused with PERMISSION_DENIED and audited; no
certificate, or one from another CA or expired, ends at the TLS handshake, audited as
``tls.refused`` with the peer and the reason; the CLI refuses a TCP address without the
certificate files, naming the missing flags.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests._daemon import free_port
from tests.box.conftest import BoxDaemon


@pytest.fixture(scope="module")
def tcp_admin(
    tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Any]
) -> Iterator[tuple[BoxDaemon, str]]:
    address = f"127.0.0.1:{free_port()}"
    tls = {"cert": pki["server"].cert, "key": pki["server"].key, "client_ca": pki["ca"].cert_path}
    config = {
        "admin": {"address": address, "tls": tls},
        "auth": {
            # Inference stays anonymous on loopback; admin over TCP needs the role anyway.
            "enabled": False,
            "certificates": [{"common_name": "it-operator", "roles": ["infer", "admin"]}],
        },
    }
    with BoxDaemon(tmp_path_factory.mktemp("tcp-admin"), config) as daemon:
        yield daemon, address


def admin_cli(address: str, pki: dict[str, Any], who: str | None, *args: str) -> Any:
    files = []
    if who is not None:
        files = ["--tls-cert", str(pki[who].cert), "--tls-key", str(pki[who].key)]
    command = [sys.executable, "-m", "appliance", *args, "--admin", address, *files]
    command += ["--tls-ca", str(pki["ca"].cert_path), "--timeout", "20"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_an_operator_certificate_reaches_the_admin_service(
    tcp_admin: tuple[BoxDaemon, str], pki: dict[str, Any]
) -> None:
    _, address = tcp_admin
    result = admin_cli(address, pki, "operator", "models", "list", "--json")
    assert result.returncode == 0, result.stderr
    models = json.loads(result.stdout)
    assert "affine" in json.dumps(models)


def test_admin_actions_over_tcp_are_audited_under_the_certificate_subject(
    tcp_admin: tuple[BoxDaemon, str], pki: dict[str, Any]
) -> None:
    daemon, address = tcp_admin
    # A refused action is audited as well: there is no earlier version to roll back to.
    result = admin_cli(address, pki, "operator", "models", "rollback", "affine")
    assert result.returncode != 0
    records = [r for r in daemon.audit_records() if r["event"] == "admin.rollback"]
    assert records, daemon.audit_records()
    assert records[-1]["caller"] == "cert:CN=it-operator,O=St. Example Hospital"
    assert records[-1]["model"] == "affine"


def test_an_inference_client_certificate_of_the_same_ca_may_not_administer(
    tcp_admin: tuple[BoxDaemon, str], pki: dict[str, Any]
) -> None:
    daemon, address = tcp_admin
    result = admin_cli(address, pki, "viewer", "models", "list")
    assert result.returncode != 0
    assert "needs role 'admin'" in result.stderr
    assert "cert:CN=ris-viewer" in result.stderr
    refused = [r for r in daemon.audit_records() if r["event"] == "auth.refused"]
    assert refused and refused[-1]["caller"].startswith("cert:CN=ris-viewer")
    assert refused[-1]["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize("who", [None, "stranger", "expired"])
def test_clients_without_a_valid_admin_certificate_are_refused_at_the_handshake(
    tcp_admin: tuple[BoxDaemon, str], pki: dict[str, Any], who: str | None
) -> None:
    daemon, address = tcp_admin
    before = len(daemon.audit_records())
    if who is None:  # the CLI itself insists on the files; go around it with grpc
        import grpc

        from appliance._proto import admin_pb2, admin_pb2_grpc

        creds = grpc.ssl_channel_credentials(pki["ca"].cert_path.read_bytes())
        with grpc.secure_channel(address, creds) as channel:
            stub = admin_pb2_grpc.AdminStub(channel)  # type: ignore[no-untyped-call]
            with pytest.raises(grpc.RpcError) as caught:
                stub.Status(admin_pb2.StatusRequest(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    else:
        result = admin_cli(address, pki, who, "models", "list")
        assert result.returncode != 0
        assert "could not reach the admin service" in result.stderr
    # The refusal is audited once the daemon's side of the handshake has failed.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(daemon.audit_records()) == before:
        time.sleep(0.05)
    new = daemon.audit_records()[before:]
    assert [r["event"] for r in new] == ["tls.refused"], new
    assert new[0]["listener"] == "admin"
    assert new[0]["peer"].startswith("ipv4:127.0.0.1:")
    assert new[0]["reason"]
    assert not any(r["event"].startswith("admin.") for r in new)


def test_the_cli_names_the_missing_certificate_flags_for_a_tcp_address(
    tcp_admin: tuple[BoxDaemon, str],
) -> None:
    _, address = tcp_admin
    command = [sys.executable, "-m", "appliance", "models", "list", "--admin", address]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "mutual TLS only" in result.stderr
    assert "--tls-cert, --tls-key and --tls-ca" in result.stderr
