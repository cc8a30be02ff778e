"""The HTTP port's security and shutdown: bearer tokens (401 without one, audited),
mutual TLS from the same ``[server.tls]`` files as gRPC, ``auto`` judged on the HTTP
address itself, and SIGTERM finishing requests in flight."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import tritonclient.http as triton_http
from cryptography import x509
from tritonclient.utils import InferenceServerException

from appliance.security import hash_token
from tests._daemon import DaemonProcess, free_port
from tests.box.conftest import Authority, BoxDaemon
from tests.models import slow_model

TOKEN = "http-infer-token-0123456789abcdefghijklmnopq"
TOKENS = [{"name": "ris", "sha256": hash_token(TOKEN), "roles": ["infer"]}]
AFFINE = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]}]
}


@pytest.fixture(scope="module")
def token_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BoxDaemon]:
    config = {"auth": {"enabled": True, "tokens": TOKENS}}
    with BoxDaemon(tmp_path_factory.mktemp("http-tokens"), config) as daemon:
        yield daemon


def post(daemon: BoxDaemon, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    url = f"http://127.0.0.1:{daemon.http_port}{path}"
    return httpx.post(url, content=json.dumps(body), headers=headers or {}, timeout=30)


def test_without_a_token_an_infer_is_401_and_audited(token_daemon: BoxDaemon) -> None:
    answer = post(token_daemon, "/v2/models/affine/infer", AFFINE)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert "expected credentials" in answer.json()["error"]
    wrong = post(token_daemon, "/v2/models/affine/infer", AFFINE, {"Authorization": "Bearer x"})
    assert wrong.status_code == 401 and "unknown token" in wrong.json()["error"]
    refused = [r for r in token_daemon.audit_records() if r["event"] == "auth.refused"]
    assert any(r["action"] == "POST /v2/models/{name}/infer" for r in refused)
    assert all(TOKEN not in json.dumps(r) for r in token_daemon.audit_records())
    lines = [r for r in token_daemon.log_records() if r.get("status") == "UNAUTHENTICATED"]
    assert any(r["rpc"] == "POST /v2/models/{name}/infer" and r["model"] == "affine" for r in lines)


def test_with_the_token_clients_are_served(token_daemon: BoxDaemon) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    with triton_http.InferenceServerClient(f"127.0.0.1:{token_daemon.http_port}") as client:
        assert client.is_server_ready()  # probes stay open
        with pytest.raises(InferenceServerException) as caught:
            client.get_model_metadata("affine")
        assert caught.value.status() == "401"
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        tensor = triton_http.InferInput("x", [2, 4], "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("affine", [tensor], headers=headers)
        np.testing.assert_array_equal(result.as_numpy("y"), 2 * x + 1)
    # The openai client sends its api_key as the bearer token.
    base_url = f"http://127.0.0.1:{token_daemon.http_port}/v1"
    assert openai.OpenAI(base_url=base_url, api_key=TOKEN).models.list().data == []
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0).models.list()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("http-pki")
    hospital, foreign = Authority(folder, "hospital-ca"), Authority(folder, "foreign-ca")
    return {
        "ca": hospital,
        "server": hospital.issue("appliance.example", server=True, file="server"),
        "viewer": hospital.issue("ris-viewer"),
        "expired": hospital.issue("ris-viewer-old", expired=True),
        "stranger": foreign.issue("ris-viewer"),
    }


@pytest.fixture(scope="module")
def mtls_daemon(
    tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Any]
) -> Iterator[BoxDaemon]:
    tls = {"cert": pki["server"].cert, "key": pki["server"].key, "client_ca": pki["ca"].cert_path}
    with BoxDaemon(tmp_path_factory.mktemp("http-mtls"), {"server": {"tls": tls}}) as daemon:
        yield daemon


def tls_context(pki: dict[str, Any], who: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"].cert_path))
    if who is not None:
        context.load_cert_chain(str(pki[who].cert), str(pki[who].key))
    return context


def test_mutual_tls_admits_a_hospital_certificate_only(
    mtls_daemon: BoxDaemon,
    pki: dict[str, Any],
) -> None:
    url = f"https://localhost:{mtls_daemon.http_port}/v2/models/affine/infer"
    answer = httpx.post(url, content=json.dumps(AFFINE), verify=tls_context(pki, "viewer"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == [3.0, 5.0, 7.0, 9.0]
    for who in (None, "stranger", "expired"):
        with pytest.raises(httpx.HTTPError):
            httpx.post(url, content=json.dumps(AFFINE), verify=tls_context(pki, who), timeout=10)
    lines = [r for r in mtls_daemon.log_records() if r.get("rpc") == "POST /v2/models/{name}/infer"]
    assert any(r["caller"] == "cert:ris-viewer" and r["status"] == "OK" for r in lines)


def test_a_reachable_http_address_without_credentials_stops_the_start(tmp_path: Path) -> None:
    # gRPC on loopback, HTTP on every interface: "auto" turns auth on for HTTP.
    config = tmp_path / "appliance.toml"
    config.write_text(
        f'[server]\naddress = "127.0.0.1:{free_port()}"\nhttp_address = "0.0.0.0:{free_port()}"\n'
        f'metrics_address = "127.0.0.1:{free_port()}"\n[repository]\npath = "{tmp_path}"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "0.0.0.0" in result.stderr and "[[auth.tokens]]" in result.stderr


def test_sigterm_finishes_http_requests_in_flight_then_exits_zero(tmp_path: Path) -> None:
    slow_model(tmp_path / "repository" / "slow" / "1" / "model.onnx", depth=1024)
    config = {"batching": {"enabled": False}, "server": {"grace_period_s": 120.0}}
    daemon = DaemonProcess(tmp_path, config).start()
    assert daemon.process is not None
    big = np.ones((32, 256), np.float32)
    answers: list[httpx.Response | Exception] = []
    started = threading.Barrier(4)

    def call() -> None:
        with triton_http.InferenceServerClient(daemon.http_address) as client:
            tensor = triton_http.InferInput("x", list(big.shape), "FP32")
            tensor.set_data_from_numpy(big)
            started.wait()
            try:
                answers.append(client.infer("slow", [tensor]))
            except Exception as exc:  # collected and checked below
                answers.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    started.wait()
    threading.Event().wait(0.5)  # the three are sent; the first is running
    daemon.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(120)
    assert daemon.process.wait(timeout=60) == 0
    assert len(answers) == 3
    for answer in answers:
        assert not isinstance(answer, Exception), answer
        np.testing.assert_array_equal(answer.as_numpy("y"), big)  # type: ignore[union-attr]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{daemon.http_address}/v2/health/live", timeout=5)


def served_serial(port: int, ca: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw_socket,
        context.wrap_socket(raw_socket, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def test_a_renewed_certificate_serves_new_http_connections(
    tmp_path: Path, pki: dict[str, Any]
) -> None:
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    shutil.copy(pki["server"].cert, cert)
    shutil.copy(pki["server"].key, key)
    config = {"server": {"tls": {"cert": cert, "key": key}}, "auth": {"tokens": TOKENS}}
    with BoxDaemon(tmp_path, config) as daemon:
        ca = pki["ca"].cert_path
        before = served_serial(daemon.http_port, ca)
        renewed = pki["ca"].issue("appliance.example", server=True, file="renewed")
        shutil.copy(renewed.key, key)  # key first: the pair does not match until both are in
        shutil.copy(renewed.cert, cert)
        deadline = time.monotonic() + 30
        while (serial := served_serial(daemon.http_port, ca)) == before:
            assert time.monotonic() < deadline, "the renewed certificate was never served"
            time.sleep(0.2)
        assert serial == x509.load_pem_x509_certificate(renewed.cert.read_bytes()).serial_number
