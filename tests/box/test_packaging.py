"""The box's packaging: the systemd unit, the Debian package, the Kubernetes manifests."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from appliance.config import parse_config
from tests._systemd import analyze_security, analyze_verify, needs_systemd_analyze

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
UNIT = PACKAGING / "systemd" / "appliance.service"
EXEC_START = "/opt/appliance/venv/bin/appliance"


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


@pytest.fixture(scope="module")
def checkable_unit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unit with ExecStart pointing at a stand-in executable: verify checks that the
    binary exists, and /opt/appliance/venv exists only on an installed box."""
    folder = tmp_path_factory.mktemp("unit")
    stand_in = folder / "appliance"
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    unit = folder / "appliance.service"
    unit.write_text(UNIT.read_text().replace(EXEC_START, str(stand_in)))
    return unit


def test_the_unit_is_a_notify_service_with_a_watchdog_and_its_directories() -> None:
    settings = unit_settings()
    assert settings["Type"] == ["notify"]
    assert settings["ExecStart"] == [f"{EXEC_START} serve --config /etc/appliance/appliance.toml"]
    assert settings["Restart"] == ["on-failure"]
    assert int(settings["WatchdogSec"][0]) > 0
    assert settings["User"] == ["appliance"]
    for key in ("StateDirectory", "ConfigurationDirectory", "LogsDirectory", "RuntimeDirectory"):
        assert settings[key] == ["appliance"], key
    assert settings["ProtectSystem"] == ["strict"]
    assert "PrivateDevices" not in settings  # the GPU needs its device nodes
    assert any("nvidia" in allow for allow in settings["DeviceAllow"])


@needs_systemd_analyze
def test_systemd_analyze_verify_passes(checkable_unit: Path) -> None:
    result = analyze_verify(checkable_unit)
    assert result.returncode == 0, result.stderr
    assert "appliance.service" not in result.stderr, result.stderr


@needs_systemd_analyze
def test_systemd_analyze_security_rates_the_unit_at_most_1_5(checkable_unit: Path) -> None:
    # 1.5 as the README says: dropping PrivateUsers= (it hid operators' uids from the
    # admin socket) must not have cost exposure.
    result = analyze_security(checkable_unit, threshold=1.5)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "Overall exposure level" in result.stdout


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed")
    out = tmp_path_factory.mktemp("deb")
    result = subprocess.run(
        ["bash", str(PACKAGING / "build-deb.sh"), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (package,) = out.glob("appliance_*_all.deb")
    assert result.stdout.strip() == str(package)
    return package


def test_the_deb_holds_the_wheel_unit_and_default_config(deb: Path) -> None:
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    paths = {line.split()[-1].removeprefix(".") for line in listing.splitlines()}
    assert "/lib/systemd/system/appliance.service" in paths
    assert "/etc/appliance/appliance.toml" in paths
    assert any(
        p.startswith("/opt/appliance/wheels/appliance-") and p.endswith(".whl") for p in paths
    )
    assert all(line.split()[1] == "root/root" for line in listing.splitlines())


def test_the_deb_control_conffiles_and_maintainer_scripts(deb: Path, tmp_path: Path) -> None:
    info = subprocess.run(
        ["dpkg-deb", "-I", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert "Package: appliance" in info
    assert f"Version: {version}" in info
    assert "python3-venv" in info and "adduser" in info
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True)
    assert (control / "conffiles").read_text().split() == ["/etc/appliance/appliance.toml"]
    for script in ("postinst", "prerm", "postrm"):
        path = control / script
        assert path.stat().st_mode & 0o111, f"{script} is not executable"
        subprocess.run(["sh", "-n", str(path)], check=True)
    postinst = (control / "postinst").read_text()
    assert "adduser --system" in postinst and "getent passwd appliance" in postinst
    assert "/opt/appliance/venv" in postinst


def test_the_shipped_config_is_valid_and_keeps_the_box_closed() -> None:
    config = parse_config(tomllib.loads((PACKAGING / "appliance.toml").read_text()))
    assert config.server.address.startswith("127.0.0.1:")
    assert config.server.http_address.startswith("127.0.0.1:")
    assert config.logging.format == "json"
    assert str(config.lifecycle.audit_log).startswith("/var/log/appliance/")
    assert config.signing.require_signed  # a box serves nothing unsigned


def kubernetes_documents() -> list[dict[str, Any]]:
    documents = []
    for path in sorted((PACKAGING / "kubernetes").glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def test_kserve_manifests_run_this_daemon_over_v2_grpc() -> None:
    by_kind = {d["kind"]: d for d in kubernetes_documents()}
    runtime, service = by_kind["ServingRuntime"], by_kind["InferenceService"]
    (container,) = runtime["spec"]["containers"]
    assert [*container["command"], *container["args"]][:2] == ["appliance", "serve"]
    ports = {p["containerPort"]: p["name"] for p in container["ports"]}
    assert ports == {8001: "h2c", 8002: "metrics"}
    assert "grpc-v2" in runtime["spec"]["protocolVersions"]
    assert runtime["spec"]["annotations"]["prometheus.kserve.io/port"] == "8002"
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] == "grpc-v2"
    config_text = by_kind["ConfigMap"]["data"]["appliance.toml"]
    config = parse_config(tomllib.loads(config_text))
    assert config.server.address == "0.0.0.0:8001"
    assert config.server.metrics_address == "0.0.0.0:8002"
