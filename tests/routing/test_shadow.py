"""Shadow traffic on a real daemon: clients only ever get the serving version's answers,
whatever the candidate answers or however it fails; the agreement is a metric and in
``appliance status``; ``--stop`` ends it and unloads the candidate again."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.http as triton_http

from appliance.cli import main
from appliance.errors import InvalidInputError, ModelNotFoundError
from tests._daemon import DaemonProcess
from tests.models import classifier_model, softmax_of
from tests.routing.conftest import admin, classify, scrape, value, wait_for_shadow

#: The serving version: the larger feature wins.
SERVING = np.array([[4.0, 0.0], [0.0, 4.0]])
#: The candidate: class 0 for every positive row, so it agrees only where x0 > x1.
CANDIDATE = np.array([[4.0, 0.0], [0.0, -4.0]])
AGREEING = np.array([[3.0, 1.0]], dtype=np.float32)  # both say class 0
DISAGREEING = np.array([[1.0, 3.0]], dtype=np.float32)  # serving 1, candidate 0


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    work = tmp_path_factory.mktemp("shadow")
    root = work / "repository"
    classifier_model(root / "clf" / "1" / "model.onnx", CANDIDATE)
    classifier_model(root / "clf" / "2" / "model.onnx", SERVING)
    # A candidate that fails every copy: it expects three features, requests carry two.
    classifier_model(root / "broken" / "1" / "model.onnx", np.ones((3, 2)))
    classifier_model(root / "broken" / "2" / "model.onnx", SERVING)
    config = {"lifecycle": {"audit_log": str(work / "audit.jsonl")}}
    with DaemonProcess(work, config) as d:
        yield d


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(daemon.address) as c:
        yield c


def cli(daemon: DaemonProcess, *args: str) -> int:
    return main([*args, "--admin", str(daemon.workdir / "admin.sock")])


def loaded_versions(daemon: DaemonProcess, name: str) -> list[int]:
    with admin(daemon) as a:
        (model,) = a.list(name).models
    return [v.version for v in model.versions if v.loaded]


def test_shadow_answers_never_reach_clients_and_agreement_moves(
    daemon: DaemonProcess, client: triton.InferenceServerClient, capsys: pytest.CaptureFixture[str]
) -> None:
    assert loaded_versions(daemon, "clf") == [2]  # the candidate is on disk only
    assert cli(daemon, "models", "shadow", "clf", "1", "--sample", "1") == 0
    assert "shadowing 100% of the requests to version 2" in capsys.readouterr().out
    assert loaded_versions(daemon, "clf") == [1, 2]

    for _ in range(10):
        result = classify(client, "clf", AGREEING)
        assert result.get_response().model_version == "2"
        np.testing.assert_allclose(
            result.as_numpy("probabilities"), softmax_of(AGREEING, SERVING), rtol=1e-5
        )
    state = wait_for_shadow(daemon, "clf", lambda s: s.rows >= 10)
    assert (state.rows, state.agreeing_rows, state.failures) == (10, 10, 0)
    assert value(scrape(daemon), "appliance_shadow_agreement_ratio", model="clf", version="1") == 1

    for _ in range(10):  # the candidate disagrees; the client still gets the serving answer
        result = classify(client, "clf", DISAGREEING)
        probabilities = result.as_numpy("probabilities")
        assert probabilities.argmax() == 1
        np.testing.assert_allclose(probabilities, softmax_of(DISAGREEING, SERVING), rtol=1e-5)
    state = wait_for_shadow(daemon, "clf", lambda s: s.rows >= 20)
    assert (state.rows, state.agreeing_rows) == (20, 10)
    ratio = value(scrape(daemon), "appliance_shadow_agreement_ratio", model="clf", version="1")
    assert ratio == pytest.approx(0.5)

    # HTTP V2 goes through the same path: its requests are copied too.
    with triton_http.InferenceServerClient(daemon.http_address) as http:
        tensor = triton_http.InferInput("x", [1, 2], "FP32")
        tensor.set_data_from_numpy(DISAGREEING)
        answer = http.infer("clf", [tensor]).as_numpy("probabilities")
    np.testing.assert_allclose(answer, softmax_of(DISAGREEING, SERVING), rtol=1e-5)
    wait_for_shadow(daemon, "clf", lambda s: s.rows == 21 and s.agreeing_rows == 10)

    assert cli(daemon, "status") == 0
    assert "shadow: clf version 1 beside version 2" in capsys.readouterr().out.replace("\n", " ")
    assert cli(daemon, "status", "--json") == 0
    (shown,) = json.loads(capsys.readouterr().out)["shadows"]
    assert (shown["name"], shown["version"], shown["rows"]) == ("clf", "1", "21")

    assert cli(daemon, "models", "shadow", "clf", "--stop") == 0
    assert "shadow stopped; agreement 47.6% of 21 rows" in capsys.readouterr().out
    assert loaded_versions(daemon, "clf") == [2]  # loaded for the shadow, unloaded after
    classify(client, "clf", DISAGREEING)
    with admin(daemon) as a:
        assert list(a.shadows().shadows) == []
    samples = scrape(daemon)
    assert value(samples, "appliance_shadow_agreement_ratio", model="clf", version="1") is None

    lines = (daemon.workdir / "audit.jsonl").read_text().splitlines()
    shadows = [e for e in map(json.loads, lines) if e["event"].startswith("admin.shadow")]
    assert [(e["event"], e["outcome"], e["version"]) for e in shadows[-2:]] == [
        ("admin.shadow", "ok", 1),
        ("admin.shadow_stop", "ok", 1),
    ]
    assert shadows[-1]["rows"] == 21


def test_a_failing_candidate_never_reaches_clients(
    daemon: DaemonProcess, client: triton.InferenceServerClient
) -> None:
    with admin(daemon) as a:
        a.shadow("broken", 1)
    for _ in range(8):
        result = classify(client, "broken", AGREEING)
        np.testing.assert_allclose(
            result.as_numpy("probabilities"), softmax_of(AGREEING, SERVING), rtol=1e-5
        )
    state = wait_for_shadow(daemon, "broken", lambda s: s.failures >= 8)
    assert (state.requests, state.failures, state.rows) == (8, 8, 0)
    samples = scrape(daemon)
    failed = value(
        samples, "appliance_shadow_requests_total", model="broken", version="1", outcome="failed"
    )
    assert failed == 8
    # No row compared: no agreement to report, rather than a made-up zero.
    assert value(samples, "appliance_shadow_agreement_ratio", model="broken", version="1") is None
    assert "expected shape [-1, 3]" in daemon.log_text()  # the reason, in the log only
    with admin(daemon) as a:
        a.shadow("broken", stop=True)


def test_sampling_copies_a_share(
    daemon: DaemonProcess, client: triton.InferenceServerClient
) -> None:
    with admin(daemon) as a:
        a.shadow("clf", 1, sample=0.25)
    for _ in range(80):
        classify(client, "clf", AGREEING)
    with admin(daemon) as a:
        (state,) = a.shadows().shadows
        assert 5 <= state.requests <= 40  # binomial(80, 0.25): 20 expected
        a.shadow("clf", stop=True)


def test_bad_shadow_requests_are_refused(daemon: DaemonProcess) -> None:
    with admin(daemon) as a:
        with pytest.raises(InvalidInputError, match="is the serving version"):
            a.shadow("clf", 2)
        with pytest.raises(
            ModelNotFoundError, match=r"no version 7 on disk; versions on disk: \[1, 2\]"
        ):
            a.shadow("clf", 7)
        with pytest.raises(InvalidInputError, match=r"expected a share of requests in \(0, 1\]"):
            a.shadow("clf", 1, sample=1.5)
        with pytest.raises(ModelNotFoundError, match="has no shadow to stop"):
            a.shadow("clf", stop=True)
        assert list(a.shadows().shadows) == []
