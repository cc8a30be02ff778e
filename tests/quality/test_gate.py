"""The site evaluation gate on a real daemon: packages built with the CLI, pushed and
activated through the admin CLI, refused when worse on the site's own data."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton

from tests._daemon import DaemonProcess
from tests.quality.conftest import (
    MODEL,
    Packages,
    cli,
    quality_config,
    site_rows,
    write_eval_csv,
)


def serving_version(daemon: DaemonProcess) -> str:
    x, _, _ = site_rows(3, seed=5)
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    with triton.InferenceServerClient(daemon.address) as client:
        return str(client.infer(MODEL, [tensor]).get_response().model_version)


def audit(daemon: DaemonProcess, event: str) -> list[dict[str, object]]:
    lines = (daemon.workdir / "audit.jsonl").read_text().splitlines()
    return [entry for entry in map(json.loads, lines) if entry["event"] == event]


def metrics(daemon: DaemonProcess) -> str:
    url = f"http://127.0.0.1:{daemon.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_a_worse_package_is_refused_although_its_self_test_passes(
    gated: DaemonProcess, packages: Packages
) -> None:
    first = cli(gated, "models", "push", str(packages.build("good", 1)), "--activate")
    assert first.returncode == 0, first.stderr
    installed = cli(gated, "models", "push", str(packages.build("worse", 2)))
    assert installed.returncode == 0, installed.stderr  # verified and self-tested

    refused = cli(gated, "models", "activate", MODEL, "2")

    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "eval_max_drop" in refused.stderr
    assert "REFUSED" in refused.stderr and "serving v1" in refused.stderr  # the table
    assert serving_version(gated) == "1"
    record = audit(gated, "admin.activate")[-1]
    assert record["outcome"] == "refused" and record["version"] == 2
    assert "candidate v2" in str(record["reason"])
    # The candidate's session is unloaded again: only version 1 stays loaded.
    listing = json.loads(cli(gated, "models", "list", MODEL, "--json").stdout)
    loaded = [v["version"] for v in listing[0]["versions"] if v["loaded"]]
    assert loaded == ["1"]

    pushed = cli(gated, "models", "push", str(packages.build("worse", 3)), "--activate")
    assert pushed.returncode == 3, pushed.stdout + pushed.stderr
    assert serving_version(gated) == "1"


def test_a_package_worse_in_one_group_only_is_refused_and_the_group_named(
    gated: DaemonProcess, packages: Packages
) -> None:
    assert (
        cli(gated, "models", "push", str(packages.build("good", 1)), "--activate").returncode == 0
    )

    refused = cli(gated, "models", "push", str(packages.build("rare_wrong", 2)), "--activate")

    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "group 'rare'" in refused.stderr
    assert "overall" not in refused.stderr.split("refused:")[0]  # within budget overall
    rows = {line.split()[0]: line for line in refused.stderr.splitlines() if line.strip()}
    assert "REFUSED" in rows["rare"] and "REFUSED" not in rows["(all)"]
    assert serving_version(gated) == "1"
    # A version as good as the serving one passes the same gate.
    passed = cli(gated, "models", "push", str(packages.build("good", 3)), "--activate")
    assert passed.returncode == 0, passed.stderr
    assert serving_version(gated) == "3"


def test_models_evaluate_prints_the_table_and_json(
    gated: DaemonProcess, packages: Packages
) -> None:
    assert (
        cli(gated, "models", "push", str(packages.build("good", 1)), "--activate").returncode == 0
    )
    assert cli(gated, "models", "push", str(packages.build("rare_wrong", 2))).returncode == 0

    text = cli(gated, "models", "evaluate", MODEL, "2")
    alone = cli(gated, "models", "evaluate", MODEL, "--json")
    table = json.loads(cli(gated, "models", "evaluate", MODEL, "2", "--json").stdout)

    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[1].split()[:4] == ["group", "rows", "serving", "v1"]
    assert [line.split()[0] for line in lines[2:]] == ["(all)", "common", "rare"]
    assert table["version"] == "2" and table["serving_version"] == "1"
    assert table["passed"] is False and table["metric"] == "accuracy"
    by_group = {row["group"]: row for row in table["rows"]}
    assert by_group["rare"]["within"] is False and by_group["(all)"]["within"] is True
    assert by_group["rare"]["serving"] == 1.0 and by_group["rare"]["candidate"] == 0.0
    assert sum(int(r["rows"]) for g, r in by_group.items() if g != "(all)") == 600
    assert alone.returncode == 0, alone.stderr
    assert json.loads(alone.stdout)["serving_version"] == "0"  # the serving one, alone
    # Scores are metrics; the data is not logged.
    scraped = metrics(gated)
    assert f'appliance_eval_metric{{group="rare",model="{MODEL}",version="2"}} 0.0' in scraped
    assert f'appliance_eval_metric{{group="rare",model="{MODEL}",version="1"}} 1.0' in scraped
    x, _, _ = site_rows(600)
    assert f"{x[0, 0]:.6f}" not in gated.log_text()
    assert np.isfinite(by_group["common"]["candidate"])


def test_unusable_eval_data_refuses_the_activation_and_says_why(
    packages: Packages, tmp_path: Path
) -> None:
    missing = tmp_path / "not-there.csv"
    config = quality_config(packages, tmp_path, eval_data=str(missing))
    with DaemonProcess(tmp_path, config) as daemon:
        refused = cli(daemon, "models", "push", str(packages.build("good", 1)), "--activate")
        listing = json.loads(cli(daemon, "models", "list", "--json").stdout)

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"eval_data {missing}: no such file" in refused.stderr
    assert MODEL not in [m["name"] for m in listing]  # nothing installed, nothing serves


def test_a_generative_metric_for_a_classifier_is_refused_and_says_why(
    packages: Packages, tmp_path: Path
) -> None:
    data = write_eval_csv(tmp_path / "site-eval.csv")
    config = quality_config(packages, tmp_path, eval_data=str(data), eval_metric="token_f1")
    with DaemonProcess(tmp_path, config) as daemon:
        refused = cli(daemon, "models", "push", str(packages.build("good", 1)), "--activate")

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "eval_metric 'token_f1' does not score a classifier" in refused.stderr
    assert "['accuracy', 'auroc', 'f1']" in refused.stderr
