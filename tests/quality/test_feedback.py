"""Outcome feedback and the retraining trigger on a real daemon: inference requests sent
with ids by tritonclient, true labels reported over gRPC and HTTP."""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton

from appliance._proto import feedback_pb2 as fb
from appliance._proto import feedback_pb2_grpc as fb_grpc
from appliance.quality.feedback import MAX_GROUPS
from tests._daemon import DaemonProcess
from tests.quality.conftest import LABELS, MODEL, Packages, cli, quality_config, site_rows


def infer(daemon: DaemonProcess, request_id: str, x: np.ndarray) -> str:
    """One request with an id; the predicted label."""
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    with triton.InferenceServerClient(daemon.address) as client:
        result = client.infer(MODEL, [tensor], request_id=request_id)
    return LABELS[int(np.argmax(result.as_numpy("probabilities")[0]))]


def report(
    daemon: DaemonProcess, request_id: str, label: str, model: str = MODEL, group: str = ""
) -> Any:
    with daemon.channel() as channel:
        stub = fb_grpc.FeedbackStub(channel)  # type: ignore[no-untyped-call]
        request = fb.ReportRequest(model_name=model, id=request_id, label=label, group=group)
        return stub.Report(request, timeout=10)


def scrape(daemon: DaemonProcess, name: str) -> float | None:
    url = f"http://127.0.0.1:{daemon.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def other(label: str) -> str:
    return LABELS[1 - LABELS.index(label)]


def wait_for(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def serving(packages: Packages, tmp_path: Path, **model: Any) -> DaemonProcess:
    daemon = DaemonProcess(tmp_path, quality_config(packages, tmp_path, **model)).start()
    pushed = cli(daemon, "models", "push", str(packages.build("good", 1)), "--activate")
    assert pushed.returncode == 0, pushed.stderr
    return daemon


@pytest.fixture
def feedback_daemon(packages: Packages, tmp_path: Path) -> Iterator[DaemonProcess]:
    daemon = serving(packages, tmp_path, feedback_window=50)
    try:
        yield daemon
    finally:
        daemon.stop()


def test_feedback_moves_live_accuracy_and_a_low_one_retrains_once_per_cooldown(
    packages: Packages, tmp_path: Path
) -> None:
    marker = tmp_path / "retrain-runs.txt"
    script = f"open({str(marker)!r}, 'a').write('run\\n'); print('retrain round done')"
    daemon = serving(
        packages,
        tmp_path,
        min_live_accuracy=0.8,
        min_feedback_reports=5,
        retrain_command=[sys.executable, "-c", script],
        retrain_cooldown_s=4.0,
    )
    gauge = f'appliance_live_accuracy{{group="",model="{MODEL}",version="1"}}'
    runs = f'appliance_retrain_runs_total{{model="{MODEL}"}}'
    try:
        x, _, _ = site_rows(20, seed=3)
        predicted = {f"req-{i}": infer(daemon, f"req-{i}", x[i : i + 1]) for i in range(20)}
        for i in range(4):  # right: live accuracy 1.0, too few reports to judge
            verdict = report(daemon, f"req-{i}", predicted[f"req-{i}"])
            assert verdict.correct and verdict.model_version == 1
        assert scrape(daemon, gauge) == 1.0
        for i in range(4, 12):  # wrong: 4/6 at the 6th report is below 0.8
            assert not report(daemon, f"req-{i}", other(predicted[f"req-{i}"])).correct
        assert scrape(daemon, gauge) == pytest.approx(4 / 12)
        wait_for(marker.exists)
        time.sleep(1.0)
        assert marker.read_text() == "run\n"  # once within the cooldown
        assert scrape(daemon, runs) == 1.0

        time.sleep(4.0)  # the cooldown has passed: the next low reading runs it again
        report(daemon, "req-12", other(predicted["req-12"]))
        wait_for(lambda: marker.read_text() == "run\nrun\n")
        assert scrape(daemon, runs) == 2.0
    finally:
        daemon.stop()
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    retrains = [r for r in records if r["event"] == "quality.retrain"]
    assert [r["outcome"] for r in retrains] == ["started", "ok", "started", "ok"]
    assert "live accuracy of version 1" in retrains[0]["reason"]
    assert "retrain round done" in daemon.log_text()  # its output went to the log


def test_bad_feedback_is_refused_with_a_clear_message(feedback_daemon: DaemonProcess) -> None:
    x, _, _ = site_rows(3, seed=4)
    infer(feedback_daemon, "kept", x[:1])
    infer(feedback_daemon, "two-rows", x[1:3])  # only one-row requests are kept

    with pytest.raises(grpc.RpcError) as unknown_model:
        report(feedback_daemon, "kept", "pos", model="nope")
    with pytest.raises(grpc.RpcError) as unknown_id:
        report(feedback_daemon, "never-sent", "pos")
    with pytest.raises(grpc.RpcError) as bad_label:
        report(feedback_daemon, "kept", "maybe")
    with pytest.raises(grpc.RpcError) as batched:
        report(feedback_daemon, "two-rows", "pos")
    assert report(feedback_daemon, "kept", "pos").reports == 1
    with pytest.raises(grpc.RpcError) as twice:
        report(feedback_daemon, "kept", "pos")

    assert unknown_model.value.code() == grpc.StatusCode.NOT_FOUND
    assert "'nope'" in str(unknown_model.value.details())
    assert unknown_id.value.code() == grpc.StatusCode.NOT_FOUND
    assert "'never-sent'" in str(unknown_id.value.details())
    assert "feedback_window" in str(unknown_id.value.details())
    assert bad_label.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "['neg', 'pos']" in str(bad_label.value.details())
    assert batched.value.code() == grpc.StatusCode.NOT_FOUND
    assert twice.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_window_forgets_the_oldest_ids(feedback_daemon: DaemonProcess) -> None:
    x, _, _ = site_rows(51, seed=6)
    for i in range(51):  # feedback_window = 50
        infer(feedback_daemon, f"w-{i}", x[i : i + 1])
    with pytest.raises(grpc.RpcError) as forgotten:
        report(feedback_daemon, "w-0", "pos")
    assert forgotten.value.code() == grpc.StatusCode.NOT_FOUND
    assert report(feedback_daemon, "w-1", "pos").model_version == 1


def test_live_accuracy_is_kept_per_group_too_and_groups_are_bounded(
    feedback_daemon: DaemonProcess,
) -> None:
    x, _, _ = site_rows(MAX_GROUPS + 6, seed=9)
    predicted = {}
    for i in range(MAX_GROUPS + 6):
        predicted[f"g-{i}"] = infer(feedback_daemon, f"g-{i}", x[i : i + 1])

    def gauge(group: str) -> float | None:
        name = f'appliance_live_accuracy{{group="{group}",model="{MODEL}",version="1"}}'
        return scrape(feedback_daemon, name)

    report(feedback_daemon, "g-0", predicted["g-0"], group="icu")  # right
    report(feedback_daemon, "g-1", other(predicted["g-1"]), group="icu")  # wrong
    report(feedback_daemon, "g-2", predicted["g-2"], group="oncology")  # right
    report(feedback_daemon, "g-3", predicted["g-3"])  # right, no group
    status, answer = http_post(
        feedback_daemon,
        f"/v2/models/{MODEL}/feedback",
        {"id": "g-4", "label": other(predicted["g-4"]), "group": "oncology"},
    )

    assert status == 200 and answer["correct"] is False, answer
    assert gauge("icu") == 0.5 and gauge("oncology") == 0.5
    assert gauge("") == pytest.approx(3 / 5)  # every report, grouped or not

    for i in range(5, MAX_GROUPS + 3):  # 30 more groups: 32 in all
        report(feedback_daemon, f"g-{i}", predicted[f"g-{i}"], group=f"ward-{i}")
    with pytest.raises(grpc.RpcError) as one_too_many:
        report(feedback_daemon, f"g-{MAX_GROUPS + 3}", "pos", group="one-too-many")
    too_long = http_post(
        feedback_daemon,
        f"/v2/models/{MODEL}/feedback",
        {"id": f"g-{MAX_GROUPS + 4}", "label": "pos", "group": "w" * 200},
    )
    not_text = http_post(
        feedback_daemon,
        f"/v2/models/{MODEL}/feedback",
        {"id": f"g-{MAX_GROUPS + 4}", "label": "pos", "group": 7},
    )

    assert one_too_many.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = str(one_too_many.value.details())
    assert f"already has reports in {MAX_GROUPS} groups" in details
    assert "'one-too-many'" in details
    assert gauge("one-too-many") is None
    # A refused report leaves its id kept: it may be reported under a known group.
    assert report(feedback_daemon, f"g-{MAX_GROUPS + 3}", "pos", group="icu").reports > 0
    assert too_long[0] == 400 and "at most 128 characters" in too_long[1]["error"]
    assert not_text[0] == 400 and "group: expected a string" in not_text[1]["error"]


def http_post(daemon: DaemonProcess, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://{daemon.http_address}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_http_feedback_route(feedback_daemon: DaemonProcess) -> None:
    x, _, _ = site_rows(1, seed=8)
    status, answer = http_post(
        feedback_daemon,
        f"/v2/models/{MODEL}/infer",
        {
            "id": "over-http",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x[0].tolist()}],
        },
    )
    assert status == 200, answer
    predicted = LABELS[int(np.argmax(answer["outputs"][0]["data"]))]
    path = f"/v2/models/{MODEL}/feedback"

    bad_label = http_post(feedback_daemon, path, {"id": "over-http", "label": "maybe"})
    unknown_id = http_post(feedback_daemon, path, {"id": "nope", "label": "pos"})
    unknown_model = http_post(
        feedback_daemon, "/v2/models/nope/feedback", {"id": "x", "label": "a"}
    )
    not_json = http_post(feedback_daemon, path, ["over-http"])
    ok = http_post(feedback_daemon, path, {"id": "over-http", "label": predicted})

    assert ok == (
        200,
        {
            "model_name": MODEL,
            "model_version": "1",
            "correct": True,
            "live_accuracy": 1.0,
            "reports": 1,
        },
    )
    assert bad_label[0] == 400 and "['neg', 'pos']" in bad_label[1]["error"]
    assert unknown_id[0] == 404 and "'nope'" in unknown_id[1]["error"]
    assert unknown_model[0] == 404
    assert not_json[0] == 400 and '"id"' in not_json[1]["error"]


def test_feedback_is_an_inference_call_behind_the_same_gate(
    packages: Packages, tmp_path: Path
) -> None:
    from appliance.security import hash_token

    token = "feedback-token-for-tests-0123456789abcdefghij"
    tokens = [{"name": "ris", "sha256": hash_token(token), "roles": ["infer"]}]
    config = {**quality_config(packages, tmp_path), "auth": {"tokens": tokens}}
    with DaemonProcess(tmp_path, config) as daemon, daemon.channel() as channel:
        stub = fb_grpc.FeedbackStub(channel)  # type: ignore[no-untyped-call]
        request = fb.ReportRequest(model_name=MODEL, id="any", label="pos")
        with pytest.raises(grpc.RpcError) as anonymous:
            stub.Report(request, timeout=10)
        with pytest.raises(grpc.RpcError) as admitted:
            stub.Report(request, timeout=10, metadata=[("authorization", f"Bearer {token}")])
        status, _ = http_post(daemon, f"/v2/models/{MODEL}/feedback", {"id": "a", "label": "b"})

    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert admitted.value.code() == grpc.StatusCode.NOT_FOUND  # past the gate, no such id
    assert status == 401
