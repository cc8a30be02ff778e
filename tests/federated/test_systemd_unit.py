"""The site's SuperNode unit: separate from the daemon, reconnecting, hardened, valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._systemd import analyze_security, analyze_verify, needs_systemd_analyze

UNIT = Path(__file__).resolve().parents[2] / "packaging" / "systemd" / "appliance-supernode.service"
EXEC = "/opt/appliance/venv/bin/flower-supernode"


def settings() -> dict[str, list[str]]:
    """Key -> values, continuation lines joined, comments dropped."""
    text = UNIT.read_text().replace("\\\n", " ")
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


@pytest.fixture(scope="module")
def checkable_unit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unit with ExecStart on a stand-in: verify wants the binary to exist."""
    folder = tmp_path_factory.mktemp("unit")
    stand_in = folder / "flower-supernode"
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    unit = folder / UNIT.name
    unit.write_text(UNIT.read_text().replace(EXEC, str(stand_in)))
    return unit


def test_runs_the_supernode_with_reconnection_limits_and_site_data() -> None:
    (exec_start,) = settings()["ExecStart"]
    args = exec_start.split()
    assert args[0] == EXEC
    assert "--max-retries=30" in args and "--max-wait-time=600" in args
    assert '"--node-config=data-path=\\"${DATA_PATH}\\""' in args
    assert "--root-certificates=${SUPERLINK_CA}" in args
    assert "--insecure" not in args
    assert settings()["Restart"] == ["on-failure"]


def test_is_independent_of_the_serving_daemon_and_yields_to_it() -> None:
    unit = settings()
    for key in ("Requires", "BindsTo", "PartOf", "Requisite", "Before"):
        assert not any("appliance.service" in v for v in unit.get(key, [])), key
    assert int(unit["CPUWeight"][0]) < 100 and int(unit["IOWeight"][0]) < 100
    assert "MemoryMax" in unit
    assert unit["DynamicUser"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]
    assert any("FLWR_DISABLE_UPDATE_CHECK=1" in v for v in unit["Environment"])


@needs_systemd_analyze
def test_systemd_analyze_verify_passes(checkable_unit: Path) -> None:
    result = analyze_verify(checkable_unit)
    assert result.returncode == 0, result.stderr
    assert UNIT.name not in result.stderr, result.stderr


@needs_systemd_analyze
def test_systemd_analyze_security_rates_the_unit_at_most_2(checkable_unit: Path) -> None:
    result = analyze_security(checkable_unit, threshold=2.0)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "Overall exposure level" in result.stdout
