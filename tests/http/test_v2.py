"""KServe V2 REST on the HTTP port, through the real ``tritonclient.http`` and raw requests:
the same answers as the gRPC port, and errors in Triton's body with the right status."""

from __future__ import annotations

import http.client
import json
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tests._daemon import DaemonProcess
from tests.http.conftest import MAX_MESSAGE_BYTES
from tests.monitoring.conftest import scrape, value
from tests.serving.conftest import tumour_rows


def http_client(daemon: DaemonProcess) -> triton_http.InferenceServerClient:
    return triton_http.InferenceServerClient(daemon.http_address)


def grpc_probabilities(daemon: DaemonProcess, x: np.ndarray) -> np.ndarray:
    with triton_grpc.InferenceServerClient(daemon.address) as client:
        tensor = triton_grpc.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result: np.ndarray = client.infer("breast_cancer", [tensor]).as_numpy("probabilities")
        return result


def http_probabilities(
    client: triton_http.InferenceServerClient, x: np.ndarray, *, binary: bool, **kwargs: Any
) -> np.ndarray:
    tensor = triton_http.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    wanted = [triton_http.InferRequestedOutput("probabilities", binary_data=binary)]
    result = client.infer("breast_cancer", [tensor], outputs=wanted, **kwargs)
    assert result.get_response()["model_version"] == "1"
    array: np.ndarray = result.as_numpy("probabilities")
    return array


def raw(
    daemon: DaemonProcess,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", daemon.http_port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def error_of(body: bytes) -> str:
    error = json.loads(body)["error"]
    assert isinstance(error, str)
    return error


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_http_answers_equal_the_grpc_port(
    http_daemon: DaemonProcess, binary: bool
) -> None:
    x = tumour_rows(5, seed=3)
    with http_client(http_daemon) as client:
        over_http = http_probabilities(client, x, binary=binary)
    over_grpc = grpc_probabilities(http_daemon, x)
    assert over_http.dtype == np.float32 and over_http.shape == (5, 2)
    np.testing.assert_array_equal(over_http, over_grpc)
    assert np.allclose(over_http.sum(axis=1), 1.0, atol=1e-5)


def test_all_outputs_by_default_and_a_compressed_request(http_daemon: DaemonProcess) -> None:
    x = tumour_rows(2, seed=4)
    with http_client(http_daemon) as client:
        tensor = triton_http.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("breast_cancer", [tensor], request_compression_algorithm="gzip")
        gzip_answer = result.as_numpy("probabilities")
        versioned = http_probabilities(client, x, binary=True, model_version="1")
    np.testing.assert_array_equal(gzip_answer, grpc_probabilities(http_daemon, x))
    np.testing.assert_array_equal(versioned, gzip_answer)


def test_health_metadata_config_and_index_match_the_grpc_port(http_daemon: DaemonProcess) -> None:
    with (
        http_client(http_daemon) as client,
        triton_grpc.InferenceServerClient(http_daemon.address) as grpc_client,
    ):
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("breast_cancer")
        assert not client.is_model_ready("no_such_model")
        assert not client.is_model_ready("breast_cancer", "7")
        server = client.get_server_metadata()
        grpc_server = grpc_client.get_server_metadata(as_json=True)
        assert server["name"] == grpc_server["name"] == "appliance"
        assert server["extensions"] == grpc_server["extensions"]
        meta = client.get_model_metadata("breast_cancer")
        grpc_meta = grpc_client.get_model_metadata("breast_cancer", as_json=True)
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 30]}]
        assert [o["name"] for o in meta["outputs"]] == [o["name"] for o in grpc_meta["outputs"]]
        assert meta["versions"] == grpc_meta["versions"] == ["1"]
        config = client.get_model_config("breast_cancer")
        grpc_config = grpc_client.get_model_config("breast_cancer", as_json=True)["config"]
        assert config["max_batch_size"] == grpc_config["max_batch_size"] == 32
        assert config["input"][0]["dims"] == [30] and config["input"][0]["data_type"] == "TYPE_FP32"
        index = {(m["name"], m["version"], m["state"]) for m in client.get_model_repository_index()}
        grpc_index = grpc_client.get_model_repository_index(as_json=True)["models"]
        assert index == {(m["name"], m["version"], m["state"]) for m in grpc_index}
        assert ("encoder", "1", "READY") in index


def test_statistics_count_http_requests(http_daemon: DaemonProcess) -> None:
    with http_client(http_daemon) as client:
        before = client.get_inference_statistics("breast_cancer")["model_stats"][0]
        http_probabilities(client, tumour_rows(3, seed=5), binary=True)
        after = client.get_inference_statistics("breast_cancer")["model_stats"][0]
    assert after["inference_stats"]["success"]["count"] == (
        before["inference_stats"]["success"]["count"] + 1
    )
    assert after["inference_count"] == before["inference_count"] + 3


def test_a_wrong_shape_is_400_naming_expected_and_got(http_daemon: DaemonProcess) -> None:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
    status, _, answer = raw(
        http_daemon, "POST", "/v2/models/breast_cancer/infer", json.dumps(body).encode()
    )
    assert status == 400
    assert error_of(answer) == "input 'input': expected shape [-1, 30] (-1: any size), got [1, 3]"
    with http_client(http_daemon) as client, pytest.raises(InferenceServerException) as caught:
        http_probabilities(client, np.zeros((1, 29), np.float32), binary=True)
    assert caught.value.status() == "400" and "expected shape [-1, 30]" in caught.value.message()


def test_an_unknown_model_or_version_is_404(http_daemon: DaemonProcess) -> None:
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]})
    status, _, answer = raw(http_daemon, "POST", "/v2/models/nope/infer", body.encode())
    assert status == 404 and "no model named 'nope'" in error_of(answer)
    status, _, answer = raw(http_daemon, "GET", "/v2/models/breast_cancer/versions/9")
    assert status == 404 and "no loaded version '9'" in error_of(answer)
    status, _, answer = raw(http_daemon, "GET", "/v2/no/such/route")
    assert status == 404 and error_of(answer) == "no route GET /v2/no/such/route"


SHORT_BINARY = json.dumps(
    {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": [1, 30],
                "parameters": {"binary_data_size": 120},
            }
        ]
    }
).encode()


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (b'{"inputs": [', {}, "does not parse"),
        (b"[1, 2]", {}, "infer request: expected a JSON object, got an array"),
        (b'{"inputs": []}', {}, "inputs: expected a non-empty array"),
        (
            b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30], "data": ["a"]}]}',
            {},
            "expected FP32 values, got a string",
        ),
        (
            SHORT_BINARY + b"\0" * 100,
            {"Inference-Header-Content-Length": str(len(SHORT_BINARY))},
            "binary_data_size 120 runs past the end of the body (100 bytes left)",
        ),
        (b"{}", {"Inference-Header-Content-Length": "99"}, "Inference-Header-Content-Length"),
    ],
    ids=["bad-json", "not-an-object", "no-inputs", "wrong-values", "short-binary", "bad-length"],
)
def test_malformed_bodies_are_400_saying_what_was_expected(
    http_daemon: DaemonProcess, body: bytes, headers: dict[str, str], expected: str
) -> None:
    status, _, answer = raw(http_daemon, "POST", "/v2/models/breast_cancer/infer", body, headers)
    assert status == 400, answer
    assert expected in error_of(answer)


def test_an_oversized_body_is_413_before_it_is_read(http_daemon: DaemonProcess) -> None:
    body = b'{"inputs": []}' + b" " * MAX_MESSAGE_BYTES
    status, _, answer = raw(http_daemon, "POST", "/v2/models/breast_cancer/infer", body)
    assert status == 413
    assert f"over the limit of {MAX_MESSAGE_BYTES}" in error_of(answer)
    # A body that does not announce its length (chunked) is cut off at the limit too.
    connection = http.client.HTTPConnection("127.0.0.1", http_daemon.http_port, timeout=30)
    chunks = iter([b'{"inputs": [' + b" " * 1024] * (MAX_MESSAGE_BYTES // 1024 + 8))
    connection.request("POST", "/v2/models/breast_cancer/infer", body=chunks, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413 and "over the limit" in error_of(response.read())
    connection.close()


def test_http_requests_are_counted_in_the_metrics(http_daemon: DaemonProcess) -> None:
    labels = {"model": "breast_cancer", "version": "1"}
    before = scrape(http_daemon)
    with http_client(http_daemon) as client:
        http_probabilities(client, tumour_rows(1, seed=6), binary=False)
    raw(http_daemon, "POST", "/v2/models/breast_cancer/infer", b'{"inputs": 5}')
    after = scrape(http_daemon)

    def delta(code: str) -> float:
        name = "appliance_requests_total"
        return (value(after, name, code=code, **labels) or 0) - (
            value(before, name, code=code, **labels) or 0
        )

    assert delta("OK") == 1
    assert delta("INVALID_ARGUMENT") == 1


def test_request_lines_carry_shapes_never_tensor_values(http_daemon: DaemonProcess) -> None:
    x = np.full((1, 30), 4321.5, dtype=np.float32)
    with http_client(http_daemon) as client:
        http_probabilities(client, x, binary=False)
        http_probabilities(client, x, binary=True)
    lines = [json.loads(line) for line in http_daemon.log_text().splitlines() if "{" in line[:1]]
    infer_lines = [
        r for r in lines if r.get("rpc") == "POST /v2/models/{name}/infer" and r["status"] == "OK"
    ]
    assert infer_lines and infer_lines[-1]["model"] == "breast_cancer"
    assert infer_lines[-1]["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [1, 30]}]
    assert infer_lines[-1]["version"] == "1"
    assert "4321.5" not in http_daemon.log_text()


def test_triton_s_timeout_parameter_is_a_deadline(http_daemon: DaemonProcess) -> None:
    x = np.ones((8, 256), np.float32)
    with http_client(http_daemon) as client, pytest.raises(InferenceServerException) as caught:
        tensor = triton_http.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        client.infer("slow", [tensor], timeout=1)  # microseconds: passed before it runs
    assert caught.value.status() == "504"
    assert "deadline" in caught.value.message().lower()
