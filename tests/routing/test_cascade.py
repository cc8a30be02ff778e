"""Cascades on a real daemon: served as a model of their own over gRPC and HTTP, the
answer is the small stage's when it is confident and the large stage's otherwise, each
stage's requests are counted, and a cascade that does not check out stops the start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.http as triton_http

from appliance.config import parse_config
from appliance.errors import ConfigError
from appliance.monitoring.monitor import UNKNOWN_MODEL
from tests._daemon import DaemonProcess
from tests.models import affine_model, classifier_model, softmax_of
from tests.monitoring.conftest import matching
from tests.routing.conftest import classify, scrape, value

#: Confident (top probability >= 0.9) when the two features differ by 1.1 or more.
SMALL = np.array([[2.0, 0.0], [0.0, 2.0]])
#: The same classes with other probabilities, so each answer shows who gave it.
LARGE = np.array([[3.0, 0.0], [0.0, 3.0]])
CONFIDENT = np.array([[3.0, 0.5]], dtype=np.float32)  # small: 0.993
UNSURE = np.array([[0.6, 0.2]], dtype=np.float32)  # small: 0.69
CASCADE = {"triage": {"stages": ["small", "large"], "min_confidence": 0.9}}


def repository(root: Path) -> None:
    classifier_model(root / "small" / "1" / "model.onnx", SMALL)
    classifier_model(root / "large" / "1" / "model.onnx", LARGE)
    classifier_model(root / "wide" / "1" / "model.onnx", np.ones((3, 2)))
    affine_model(root / "affine" / "1" / "model.onnx", features=2)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    work = tmp_path_factory.mktemp("cascade")
    repository(work / "repository")
    with DaemonProcess(work, {"cascades": CASCADE}) as d:
        yield d


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(daemon.address) as c:
        yield c


def stage_counts(daemon: DaemonProcess) -> tuple[float | None, float | None]:
    samples = scrape(daemon)
    name = "appliance_cascade_requests_total"
    return (
        value(samples, name, model="triage", stage="small"),
        value(samples, name, model="triage", stage="large"),
    )


def test_the_confident_stage_answers(
    daemon: DaemonProcess, client: triton.InferenceServerClient
) -> None:
    before_small, before_large = stage_counts(daemon)
    assert before_small is not None and before_large is not None
    for _ in range(3):
        result = classify(client, "triage", CONFIDENT)
        assert result.get_response().model_name == "triage"
        np.testing.assert_allclose(
            result.as_numpy("probabilities"), softmax_of(CONFIDENT, SMALL), rtol=1e-5
        )
    for _ in range(2):
        result = classify(client, "triage", UNSURE)
        np.testing.assert_allclose(
            result.as_numpy("probabilities"), softmax_of(UNSURE, LARGE), rtol=1e-5
        )
    # One unsure row sends the whole request on: one stage answers a request.
    both = np.concatenate([CONFIDENT, UNSURE])
    result = classify(client, "triage", both)
    np.testing.assert_allclose(result.as_numpy("probabilities"), softmax_of(both, LARGE), rtol=1e-5)
    assert stage_counts(daemon) == (before_small + 3, before_large + 3)


def test_served_over_http_with_the_stages_metadata(daemon: DaemonProcess) -> None:
    before_small, _ = stage_counts(daemon)
    assert before_small is not None
    with triton_http.InferenceServerClient(daemon.http_address) as http:
        metadata: Any = http.get_model_metadata("triage")
        assert metadata["name"] == "triage"
        assert metadata["platform"] == "ensemble"
        assert [(t["name"], t["shape"]) for t in metadata["inputs"]] == [("x", [-1, 2])]
        assert [t["name"] for t in metadata["outputs"]] == ["probabilities"]
        assert http.is_model_ready("triage")
        tensor = triton_http.InferInput("x", [1, 2], "FP32")
        tensor.set_data_from_numpy(CONFIDENT)
        answer = http.infer("triage", [tensor]).as_numpy("probabilities")
    np.testing.assert_allclose(answer, softmax_of(CONFIDENT, SMALL), rtol=1e-5)
    assert stage_counts(daemon)[0] == before_small + 1


def test_requests_count_under_the_cascade_s_name(
    daemon: DaemonProcess, client: triton.InferenceServerClient
) -> None:
    def counts() -> tuple[float, float, float]:
        samples = scrape(daemon)
        name = "appliance_requests_total"
        answered = value(samples, name, model="triage", version="1", code="OK")
        refused = value(samples, name, model="triage", version="", code="INVALID_ARGUMENT")
        unknown = sum(matching(samples, name, model=UNKNOWN_MODEL).values())
        return answered or 0.0, refused or 0.0, unknown

    answered, refused, unknown = counts()
    for _ in range(2):
        classify(client, "triage", CONFIDENT)
    classify(client, "triage", UNSURE)
    with pytest.raises(triton.InferenceServerException):
        classify(client, "triage", np.ones((1, 3), dtype=np.float32))

    assert counts() == (answered + 3, refused + 1, unknown)


def test_requests_are_checked_like_any_model(client: triton.InferenceServerClient) -> None:
    with pytest.raises(triton.InferenceServerException, match=r"expected shape \[-1, 2\]"):
        classify(client, "triage", np.ones((1, 3), dtype=np.float32))
    with pytest.raises(triton.InferenceServerException, match="answers at version 1"):
        tensor = triton.InferInput("x", [1, 2], "FP32")
        tensor.set_data_from_numpy(CONFIDENT)
        client.infer("triage", [tensor], model_version="2")
    metadata = client.get_model_metadata("triage")
    assert (metadata.name, list(metadata.versions)) == ("triage", ["1"])


@pytest.mark.parametrize(
    ("cascade", "message"),
    [
        ({"stages": ["small", "nope"]}, "cascade 'bad': stage 'nope' does not serve"),
        ({"stages": ["small", "wide"]}, "stage 'wide' has inputs x (FP32, [-1, 3])"),
        ({"stages": ["affine", "small"]}, "expected a class-probability output"),
    ],
)
def test_a_cascade_that_does_not_check_out_stops_the_start(
    tmp_path: Path, cascade: dict[str, Any], message: str
) -> None:
    repository(tmp_path / "repository")
    with pytest.raises(RuntimeError, match="daemon exited") as failed:
        DaemonProcess(tmp_path, {"cascades": {"bad": cascade}}).start()
    assert message in str(failed.value)


@pytest.mark.parametrize(
    ("cascade", "message"),
    [
        ({"stages": ["small"]}, "key 'cascades.bad.stages': List should have at least 2 items"),
        ({"stages": ["small", "small"]}, "expected distinct model names"),
        ({"stages": ["bad", "large"]}, "cascade 'bad' lists itself among its stages"),
        ({"stages": ["small", "large"], "min_confidence": 1.5}, "min_confidence"),
        ({"stages": ["small", "large"], "threshold": 0.9}, "unknown key 'cascades.bad.threshold'"),
    ],
)
def test_bad_cascade_keys_are_config_errors(cascade: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as failed:
        parse_config({"cascades": {"bad": cascade}})
    assert message in str(failed.value)
