"""TLS, mTLS, bearer tokens and roles, against a real daemon and real certificates.

Refusals at the TLS layer (no certificate, another CA, expired) end the handshake, so
the client sees UNAVAILABLE and no RPC runs; refusals at the gate give UNAUTHENTICATED
or PERMISSION_DENIED and an audit record.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from appliance.security import hash_token
from tests.box.conftest import BoxDaemon, infer_affine

INFER_TOKEN = "infer-token-for-tests-0123456789abcdefghijklmn"
ADMIN_TOKEN = "admin-token-for-tests-0123456789abcdefghijklmn"
INFER = {"authorization": f"Bearer {INFER_TOKEN}"}
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}

TOKENS = [
    {"name": "ris", "sha256": hash_token(INFER_TOKEN), "roles": ["infer"]},
    {"name": "it-ops", "sha256": hash_token(ADMIN_TOKEN), "roles": ["infer", "admin"]},
]


def tls_client(daemon: BoxDaemon, pki: dict[str, Any], who: str | None) -> Any:
    client_cert = pki[who] if who else None
    return triton.InferenceServerClient(
        daemon.address,
        ssl=True,
        root_certificates=str(pki["ca"].cert_path),
        private_key=str(client_cert.key) if client_cert else None,
        certificate_chain=str(client_cert.cert) if client_cert else None,
    )


def status_of(exc: InferenceServerException) -> str:
    return str(exc.status()).removeprefix("StatusCode.")


@pytest.fixture(scope="module")
def mtls_daemon(
    tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Any]
) -> Iterator[BoxDaemon]:
    config = {
        "server": {
            "tls": {
                "cert": pki["server"].cert,
                "key": pki["server"].key,
                "client_ca": pki["ca"].cert_path,
            },
            "repository_control": True,
        },
        "auth": {"certificates": [{"common_name": "it-operator", "roles": ["infer", "admin"]}]},
    }
    with BoxDaemon(tmp_path_factory.mktemp("mtls"), config) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def token_daemon(
    tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Any]
) -> Iterator[BoxDaemon]:
    config = {
        "server": {
            "tls": {"cert": pki["server"].cert, "key": pki["server"].key},
            "repository_control": True,
        },
        "auth": {"tokens": TOKENS},
    }
    with BoxDaemon(tmp_path_factory.mktemp("tokens"), config) as daemon:
        yield daemon


def test_a_client_certificate_of_the_hospital_ca_may_infer(
    mtls_daemon: BoxDaemon, pki: dict[str, Any]
) -> None:
    with tls_client(mtls_daemon, pki, "viewer") as client:
        y = infer_affine(client)
    np.testing.assert_allclose(y, 2 * np.arange(8, dtype=np.float32).reshape(2, 4) + 1)
    line = next(r for r in mtls_daemon.log_records() if r.get("rpc") == "ModelInfer")
    assert line["caller"] == "cert:ris-viewer"


@pytest.mark.parametrize("who", [None, "stranger", "expired"])
def test_the_tls_layer_refuses_missing_foreign_and_expired_certificates(
    mtls_daemon: BoxDaemon, pki: dict[str, Any], who: str | None
) -> None:
    refusals_before = len(tls_refusals(mtls_daemon))
    with (
        tls_client(mtls_daemon, pki, who) as client,
        pytest.raises(InferenceServerException) as refused,
    ):
        infer_affine(client)
    assert status_of(refused.value) == "UNAVAILABLE"
    # The handshake ended before any RPC: no request line, but an audit record (gRPC
    # core's log line reaches the audit through a pipe: allow it a moment).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(tls_refusals(mtls_daemon)) <= refusals_before:
        time.sleep(0.05)
    assert len(tls_refusals(mtls_daemon)) > refusals_before
    assert not any(
        r.get("rpc") == "ModelInfer" and r.get("caller") != "cert:ris-viewer"
        for r in mtls_daemon.log_records()
    )


def tls_refusals(daemon: BoxDaemon) -> list[dict[str, Any]]:
    return [r for r in daemon.audit_records() if r["event"] == "tls.refused"]


def test_an_unlisted_certificate_cannot_load_or_unload(
    mtls_daemon: BoxDaemon, pki: dict[str, Any]
) -> None:
    with tls_client(mtls_daemon, pki, "viewer") as client:
        for action in (client.load_model, client.unload_model):
            with pytest.raises(InferenceServerException) as refused:
                action("affine")
            assert status_of(refused.value) == "PERMISSION_DENIED"
            assert "needs role 'admin'" in refused.value.message()
            assert "cert:ris-viewer" in refused.value.message()
        assert client.is_model_ready("affine")
    refusals = [r for r in mtls_daemon.audit_records() if r["event"] == "auth.refused"]
    assert {r["action"] for r in refusals if r["caller"] == "cert:ris-viewer"} >= {
        "RepositoryModelLoad",
        "RepositoryModelUnload",
    }


def test_a_listed_operator_certificate_may_unload_and_load(
    mtls_daemon: BoxDaemon, pki: dict[str, Any]
) -> None:
    with tls_client(mtls_daemon, pki, "operator") as client:
        client.unload_model("affine")
        assert not client.is_model_ready("affine")
        client.load_model("affine")
        assert client.is_model_ready("affine")
    granted = [r for r in mtls_daemon.audit_records() if r["event"] == "auth.granted"]
    assert {r["action"] for r in granted if r["caller"] == "cert:it-operator"} == {
        "RepositoryModelLoad",
        "RepositoryModelUnload",
    }


def test_probes_are_open_and_everything_else_needs_a_token(
    token_daemon: BoxDaemon, pki: dict[str, Any]
) -> None:
    with tls_client(token_daemon, pki, None) as client:
        assert client.is_server_live()
        assert client.is_server_ready()
        with pytest.raises(InferenceServerException) as refused:
            infer_affine(client)
        assert status_of(refused.value) == "UNAUTHENTICATED"
        assert "got none" in refused.value.message()
        with pytest.raises(InferenceServerException) as wrong:
            client.get_model_metadata("affine", headers={"authorization": "Bearer guessed"})
        assert status_of(wrong.value) == "UNAUTHENTICATED"
        assert "unknown token" in wrong.value.message()
    refusals = [r for r in token_daemon.audit_records() if r["event"] == "auth.refused"]
    assert [(r["action"], r["status"]) for r in refusals][-2:] == [
        ("ModelInfer", "UNAUTHENTICATED"),
        ("ModelMetadata", "UNAUTHENTICATED"),
    ]
    assert all("guessed" not in line for line in token_daemon.audit_path.read_text().splitlines())


def test_an_infer_token_may_infer_but_not_load_or_unload(
    token_daemon: BoxDaemon, pki: dict[str, Any]
) -> None:
    with tls_client(token_daemon, pki, None) as client:
        x = np.ones((1, 4), dtype=np.float32)
        tensor = triton.InferInput("x", [1, 4], "FP32")
        tensor.set_data_from_numpy(x)
        y = client.infer("affine", [tensor], headers=INFER).as_numpy("y")
        np.testing.assert_allclose(y, 3 * x)
        for action in (client.load_model, client.unload_model):
            with pytest.raises(InferenceServerException) as refused:
                action("affine", headers=INFER)
            assert status_of(refused.value) == "PERMISSION_DENIED"
        assert client.is_model_ready("affine", headers=INFER)
    refused_ris = [
        r["action"]
        for r in token_daemon.audit_records()
        if r["event"] == "auth.refused" and r["caller"] == "token:ris"
    ]
    assert refused_ris == ["RepositoryModelLoad", "RepositoryModelUnload"]


def test_an_admin_token_may_unload_and_load(token_daemon: BoxDaemon, pki: dict[str, Any]) -> None:
    with tls_client(token_daemon, pki, None) as client:
        client.unload_model("affine", headers=ADMIN)
        assert not client.is_model_ready("affine", headers=ADMIN)
        client.load_model("affine", headers=ADMIN)
        assert client.is_model_ready("affine", headers=ADMIN)
    assert INFER_TOKEN not in token_daemon.log_text()
    assert ADMIN_TOKEN not in token_daemon.log_text() + token_daemon.audit_path.read_text()


def test_server_certificate_reloads_without_restart(tmp_path: Path, pki: dict[str, Any]) -> None:
    """Renewal by another CA: clients trusting only the new CA connect once the files
    change, with the same process serving throughout."""
    live = {"cert": tmp_path / "server.crt", "key": tmp_path / "server.key"}
    live["cert"].write_bytes(pki["server"].cert.read_bytes())
    live["key"].write_bytes(pki["server"].key.read_bytes())
    config = {"server": {"tls": live}, "auth": {"tokens": TOKENS}}
    renewed = pki["foreign"].issue("appliance.example", server=True, file="renewed")
    with BoxDaemon(tmp_path, config) as daemon:
        pid = daemon.process.pid if daemon.process else None
        old_trust = {"ssl": True, "root_certificates": str(pki["ca"].cert_path)}
        new_trust = {"ssl": True, "root_certificates": str(pki["foreign"].cert_path)}
        with triton.InferenceServerClient(daemon.address, **old_trust) as client:
            assert client.is_server_live()
        # The key first, then the certificate: in between the pair does not match and
        # the previous one stays in use.
        live["key"].write_bytes(renewed.key.read_bytes())
        with triton.InferenceServerClient(daemon.address, **old_trust) as client:
            assert client.is_server_live()
        live["cert"].write_bytes(renewed.cert.read_bytes())
        with triton.InferenceServerClient(daemon.address, **new_trust) as client:
            assert client.is_server_live()
            assert client.is_model_ready("affine", headers=INFER)
        with (
            triton.InferenceServerClient(daemon.address, **old_trust) as client,
            pytest.raises(InferenceServerException),
        ):
            client.is_server_live()
        assert daemon.process is not None and daemon.process.pid == pid
        assert daemon.process.poll() is None
    messages = [r["msg"] for r in daemon.log_records()]
    assert any("not usable" in m and "does not match" in m for m in messages)
    assert any("new connections use the new certificate" in m for m in messages)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [((), "UNAUTHENTICATED"), (tuple(INFER.items()), "INVALID_ARGUMENT")],
    ids=["no-token", "infer-token"],
)
def test_bytes_that_do_not_parse_are_judged_after_the_caller(
    token_daemon: BoxDaemon,
    pki: dict[str, Any],
    headers: tuple[tuple[str, str], ...],
    expected: str,
) -> None:
    """Only an admitted caller learns that its request was malformed."""
    import grpc

    creds = grpc.ssl_channel_credentials(pki["ca"].cert_path.read_bytes())
    with grpc.secure_channel(token_daemon.address, creds) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=None,
            response_deserializer=None,
        )
        with pytest.raises(grpc.RpcError) as caught:
            call(b"\xff\xff\xff not a protobuf", metadata=headers, timeout=10)
    assert caught.value.code().name == expected, caught.value.details()
    if expected == "INVALID_ARGUMENT":
        assert "expected a serialized inference.ModelInferRequest" in caught.value.details()
    else:
        assert "not a protobuf" not in caught.value.details()
