"""``appliance auth`` and ``appliance config``: what an operator types on a box."""

from __future__ import annotations

import io
import json
import tomllib
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.config import parse_config
from appliance.security import hash_token


def test_auth_token_prints_a_token_and_the_entry_that_admits_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["auth", "token", "--name", "ris", "--role", "infer", "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["sha256"] == hash_token(made["token"]) and len(made["token"]) >= 43
    assert main(["auth", "token", "--name", "ris", "--role", "infer", "--role", "admin"]) == 0
    entry = capsys.readouterr().out.split("add to appliance.toml:", 1)[1]
    config = parse_config(tomllib.loads(entry))
    assert config.auth.tokens[0].roles == ["admin", "infer"]


def test_hash_token_reads_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-token\n"))
    assert main(["auth", "hash-token"]) == 0
    assert capsys.readouterr().out.strip() == hash_token("s3cret-token")
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["auth", "hash-token"]) == 2
    assert "expected a token on stdin" in capsys.readouterr().err


def test_config_check_names_the_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text('[server]\naddress = "127.0.0.1:8001"\n')
    bad.write_text('[server]\nadress = "127.0.0.1:8001"\n')
    assert main(["config", "check", str(good)]) == 0
    assert "auth off" in capsys.readouterr().out
    assert main(["config", "check", str(bad)]) == 2
    assert "unknown key 'server.adress'" in capsys.readouterr().err
