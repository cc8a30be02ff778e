"""The V2 protocol through tritonclient, unchanged: health, metadata, infer, repository."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from tests.serving.conftest import DEFAULT_MODEL, infer_input, tumour_rows, tumours


def test_server_is_live_and_ready(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("breast_cancer")
    assert not client.is_model_ready("no_such_model")


def test_server_metadata_names_the_extensions(client: triton.InferenceServerClient) -> None:
    meta = client.get_server_metadata()
    assert meta.name == "appliance"
    assert "model_repository" in meta.extensions


def test_model_metadata_comes_from_the_onnx_graph(client: triton.InferenceServerClient) -> None:
    meta = client.get_model_metadata("breast_cancer")
    assert meta.platform == "onnxruntime_onnx"
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("input", "FP32", [-1, 30])
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("probabilities", "FP32", [-1, 2])
    ]


def test_model_config_reports_batching_and_labels(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config("breast_cancer").config
    assert config.max_batch_size > 0
    assert list(config.input[0].dims) == [30]
    assert config.parameters["labels"].string_value == "malignant,benign"


@pytest.mark.parametrize("rows", [1, 7, 32])
def test_infer_equals_in_process_onnx_runtime(
    client: triton.InferenceServerClient, rows: int
) -> None:
    x, labels = tumours(rows, seed=rows)
    result = client.infer("breast_cancer", [infer_input("input", x, "FP32")])
    expected = ort.InferenceSession(str(DEFAULT_MODEL)).run(None, {"input": x})[0]
    got = result.as_numpy("probabilities")
    assert got.shape == (rows, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    # The classifier is real: most tumours are called as the data labels them
    # (column 0 malignant, column 1 benign, as the labels' class indices).
    assert (got.argmax(axis=1) == labels).mean() > 0.5


def test_response_echoes_id_model_and_version(client: triton.InferenceServerClient) -> None:
    x = tumour_rows(2)
    result = client.infer(
        "breast_cancer", [infer_input("input", x, "FP32")], request_id="req-42"
    ).get_response()
    assert (result.id, result.model_name, result.model_version) == ("req-42", "breast_cancer", "1")


def test_requested_outputs_are_honoured(client: triton.InferenceServerClient) -> None:
    x = tumour_rows(3)
    outputs = [triton.InferRequestedOutput("probabilities")]
    result = client.infer("breast_cancer", [infer_input("input", x, "FP32")], outputs=outputs)
    assert result.as_numpy("probabilities").shape == (3, 2)


def test_stream_infer_answers_each_request_and_reports_errors_in_stream(
    client: triton.InferenceServerClient,
) -> None:
    import queue

    answers: queue.Queue[tuple[object, object]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer("breast_cancer", [infer_input("input", tumour_rows(2), "FP32")])
        bad = infer_input("input", np.zeros((1, 29), np.float32), "FP32")
        client.async_stream_infer("breast_cancer", [bad])
        client.async_stream_infer("breast_cancer", [infer_input("input", tumour_rows(1), "FP32")])
        got = [answers.get(timeout=10) for _ in range(3)]
    finally:
        client.stop_stream()
    ok_first, err_first = got[0]
    assert err_first is None and ok_first.as_numpy("probabilities").shape == (2, 2)
    _, error = got[1]
    assert isinstance(error, InferenceServerException)
    assert "expected shape [-1, 30]" in str(error)
    assert got[2][1] is None  # the stream survived the bad request


def test_versions_are_addressable_and_latest_is_default(
    repo_client: triton.InferenceServerClient,
) -> None:
    x = np.ones((2, 4), np.float32)
    latest = repo_client.infer("affine", [infer_input("x", x, "FP32")])
    v1 = repo_client.infer("affine", [infer_input("x", x, "FP32")], model_version="1")
    assert latest.get_response().model_version == "2"
    np.testing.assert_array_equal(latest.as_numpy("y"), 3 * x + 1)
    np.testing.assert_array_equal(v1.as_numpy("y"), 2 * x + 1)
    assert sorted(repo_client.get_model_metadata("affine").versions) == ["1", "2"]


def test_unknown_version_is_not_found(repo_client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as err:
        repo_client.infer(
            "affine", [infer_input("x", np.ones((1, 4), np.float32), "FP32")], model_version="9"
        )
    assert err.value.status() == "StatusCode.NOT_FOUND"
    assert "loaded versions: [1, 2]" in err.value.message()


def test_repository_index_lists_every_version(repo_client: triton.InferenceServerClient) -> None:
    index = repo_client.get_model_repository_index()
    found = {(m.name, m.version): m.state for m in index.models}
    assert found[("affine", "1")] == "READY"
    assert found[("affine", "2")] == "READY"
    assert found[("tokens", "1")] == "READY"
    assert ("affine", "notes") not in found


def test_unload_then_load(repo_client: triton.InferenceServerClient) -> None:
    x = np.ones((1, 4), np.float32)
    repo_client.unload_model("affine")
    assert not repo_client.is_model_ready("affine")
    with pytest.raises(InferenceServerException) as err:
        repo_client.infer("affine", [infer_input("x", x, "FP32")])
    assert err.value.status() == "StatusCode.UNAVAILABLE"
    states = {(m.name, m.version): m.state for m in repo_client.get_model_repository_index().models}
    assert states[("affine", "2")] == "UNAVAILABLE"
    repo_client.load_model("affine")
    assert repo_client.is_model_ready("affine")
    np.testing.assert_array_equal(
        repo_client.infer("affine", [infer_input("x", x, "FP32")]).as_numpy("y"), 3 * x + 1
    )


def test_load_of_unknown_model_is_not_found(repo_client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as err:
        repo_client.load_model("nope")
    assert err.value.status() == "StatusCode.NOT_FOUND"


def test_statistics_count_requests_and_rows(repo_client: triton.InferenceServerClient) -> None:
    before = repo_client.get_inference_statistics("tokens").model_stats[0]
    ids = np.arange(12, dtype=np.int64).reshape(3, 4)
    repo_client.infer(
        "tokens",
        [infer_input("ids", ids, "INT64"), infer_input("mask", np.ones_like(ids), "INT64")],
    )
    after = repo_client.get_inference_statistics("tokens").model_stats[0]
    assert after.inference_stats.success.count == before.inference_stats.success.count + 1
    assert after.inference_count == before.inference_count + 3
    assert after.last_inference > 0


def test_multi_input_model_computes_per_row(repo_client: triton.InferenceServerClient) -> None:
    ids = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64)
    mask = np.array([[1, 1, 0], [1, 0, 0]], dtype=np.int64)
    result = repo_client.infer(
        "tokens", [infer_input("ids", ids, "INT64"), infer_input("mask", mask, "INT64")]
    )
    np.testing.assert_array_equal(result.as_numpy("total"), [[3], [4]])


def test_fixed_shape_model_is_served_unbatched(repo_client: triton.InferenceServerClient) -> None:
    assert repo_client.get_model_config("fixed").config.max_batch_size == 0
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(
        repo_client.infer("fixed", [infer_input("x", x, "FP32")]).as_numpy("y"), -x
    )
