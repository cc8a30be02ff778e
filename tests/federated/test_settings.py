"""Run settings: one pydantic model, read by kebab-case key from Flower's run config,
strict about types, and every bad value a ``SettingsError`` naming its key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from federated.errors import SettingsError
from federated.settings import Aggregation, Encoding, ModelKind, Privacy, RunSettings

APP_CONFIG = Path(__file__).resolve().parents[2] / "federated" / "pyproject.toml"


def app_run_config() -> dict[str, object]:
    config = tomllib.loads(APP_CONFIG.read_text(encoding="utf-8"))
    run_config: dict[str, object] = config["tool"]["flwr"]["app"]["config"]
    return run_config


def test_the_apps_run_config_names_every_setting_with_its_default() -> None:
    """``federated/pyproject.toml`` is what `flwr run` sends: it must match the model."""
    run_config = app_run_config()
    keys = [field.alias for field in RunSettings.model_fields.values()]
    assert sorted(run_config) == sorted(keys)
    assert RunSettings.from_run_config(run_config) == RunSettings()  # type: ignore[arg-type]


def test_kebab_case_keys_strings_and_ints_become_typed_values() -> None:
    settings = RunSettings.from_run_config(
        {
            "num-server-rounds": 5,
            "model": "small-cnn",
            "input-shape": "1, 8,8",
            "labels": "cat, dog ,bird",
            "hidden": 16,
            "learning-rate": 1,  # TOML writes 1 for 1.0
            "aggregation": "trimmed-mean",
            "update-encoding": "int8",
            "privacy": "client",
            "secure-aggregation": False,
            "run-id-flower-adds": "ignored",
        }
    )
    assert settings.num_server_rounds == 5
    assert settings.model is ModelKind.SMALL_CNN
    assert settings.input_shape == (1, 8, 8)
    assert settings.labels == ("cat", "dog", "bird") and settings.num_classes == 3
    assert settings.hidden == (16,)
    assert settings.learning_rate == 1.0 and isinstance(settings.learning_rate, float)
    assert settings.aggregation is Aggregation.TRIMMED_MEAN
    assert settings.update_encoding is Encoding.INT8
    assert settings.privacy is Privacy.CLIENT


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"num-server-rounds": "3"}, "run config 'num-server-rounds': expected int, got str '3'"),
        ({"seed": 1.5}, "run config 'seed': expected int, got float 1.5"),
        ({"secure-aggregation": 1}, "run config 'secure-aggregation': expected bool, got int 1"),
        ({"learning-rate": True}, "run config 'learning-rate': expected float, got bool True"),
        (
            {"privacy": "everyone"},
            "run config 'privacy': expected one of 'none', 'client', 'server', got 'everyone'",
        ),
        ({"num-server-rounds": 0}, "run config 'num-server-rounds': expected at least 1, got 0"),
        ({"dp-delta": 1.0}, "run config 'dp-delta': expected less than 1.0, got 1.0"),
        ({"labels": "benign"}, "run config 'labels': expected at least two class names"),
        ({"labels": "a,b,a"}, "run config 'labels': expected distinct names"),
        (
            {"input-shape": "30,x"},
            "run config 'input-shape': expected comma-separated integers, got '30,x'",
        ),
        (
            {"model": "small-cnn"},
            "run config 'input-shape': expected 3 positive integer(s) for small-cnn",
        ),
    ],
)
def test_a_bad_value_names_its_key_what_was_expected_and_what_arrived(
    config: dict[str, bool | int | float | str], message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        RunSettings.from_run_config(config)
    assert str(caught.value) == message


def test_python_callers_use_field_names_and_get_the_same_checks() -> None:
    assert RunSettings(privacy=Privacy.SERVER).privacy is Privacy.SERVER
    with pytest.raises(SettingsError, match=r"^run config 'local-epochs': expected at least 1"):
        RunSettings(local_epochs=0)


def test_settings_are_frozen() -> None:
    settings = RunSettings()
    with pytest.raises(Exception, match="frozen"):
        settings.seed = 3  # type: ignore[misc]
