"""Typed run settings, parsed from Flower's run config (``[tool.flwr.app.config]``).

The same run config reaches the ServerApp and every ClientApp, so both sides parse it
here and agree on the model, the encoding and the privacy setup. ``RunSettings`` is a
pydantic model: each field is declared once, and its run-config key is the field name
in kebab case (``num_server_rounds`` is ``num-server-rounds``). Values are strict, as
TOML writes them (an int where a float is wanted is the one conversion), and every bad
value is a ``SettingsError`` naming the key, what was expected and what arrived, never
an ``assert``. Node config (per site) holds only ``data-path``; see ``federated.data``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from federated.errors import SettingsError

UserConfigValue = bool | int | float | str


class ModelKind(enum.Enum):
    """Which ``compress.models`` definition the run trains."""

    TABULAR_MLP = "tabular-mlp"
    SMALL_CNN = "small-cnn"


class Aggregation(enum.Enum):
    """How the server combines site updates; all but FedAvg bound one bad site's pull."""

    FEDAVG = "fedavg"
    MEDIAN = "median"
    TRIMMED_MEAN = "trimmed-mean"
    KRUM = "krum"


class Encoding(enum.Enum):
    """How a site encodes its update on the wire (see ``federated.encoding``)."""

    FLOAT32 = "float32"
    FP16 = "fp16"
    INT8 = "int8"


class Privacy(enum.Enum):
    """Which differential-privacy mechanism runs, if any (see ``federated.privacy``)."""

    NONE = "none"
    CLIENT = "client"  # DP-SGD at each site: per-example clipping + Gaussian noise
    SERVER = "server"  # client-level clipping and noise added by the server


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class RunSettings(BaseModel):
    """Everything a run fixes. Defaults suit the bundled breast-cancer demo.

    Built from a run config with ``from_run_config``, or in Python by field name.
    """

    # Flower's run config carries every key of the app (and Flower's own), so unknown
    # keys are ignored rather than refused.
    model_config = ConfigDict(
        frozen=True,
        strict=True,
        extra="ignore",
        alias_generator=_kebab,
        validate_by_alias=True,
        validate_by_name=True,
    )

    num_server_rounds: int = Field(default=3, ge=1)
    # Enums are given by value ("tabular-mlp"), hence not strict.
    model: ModelKind = Field(default=ModelKind.TABULAR_MLP, strict=False)
    # Feature count for the MLP, or "C,H,W" for the CNN.
    input_shape: tuple[int, ...] = (30,)
    # Class names in logit order; a site's label must be one of them (as text).
    labels: tuple[str, ...] = ("0", "1")
    hidden: tuple[int, ...] = (64, 32)
    # Two local epochs at lr 0.1 reach centralized accuracy in the benchmark (non-IID, 3 sites).
    local_epochs: int = Field(default=2, ge=1)
    batch_size: int = Field(default=32, ge=1)
    learning_rate: float = Field(default=0.1, gt=0)
    # SGD momentum is off by default: under DP-SGD it carries noise across steps.
    momentum: float = 0.0
    fraction_train: float = Field(default=1.0, gt=0, le=1)
    # 0 skips per-round evaluation on the sites; the round-0 baseline always runs.
    fraction_evaluate: float = Field(default=1.0, ge=0, le=1)
    # Two of three sites suffice, so a round completes when one site drops out.
    min_train_nodes: int = 2
    min_evaluate_nodes: int = 2
    min_available_nodes: int = 2
    aggregation: Aggregation = Field(default=Aggregation.FEDAVG, strict=False)
    # Fraction cut from each end per coordinate for trimmed mean (1/3 of 3 sites = median).
    trim_beta: float = Field(default=0.2, ge=0, lt=0.5)
    # Sites Krum assumes may be malicious; Krum needs more than 2f + 2 sites.
    krum_malicious: int = 0
    update_encoding: Encoding = Field(default=Encoding.FLOAT32, strict=False)
    privacy: Privacy = Field(default=Privacy.NONE, strict=False)
    dp_clip_norm: float = Field(default=1.0, gt=0)
    # 0 means "calibrate": pick the smallest multiplier that meets dp_target_epsilon.
    dp_noise_multiplier: float = Field(default=0.0, ge=0)
    dp_target_epsilon: float = Field(default=8.0, gt=0)
    # 1e-5 is below 1/n for every site size we expect (n < 100,000).
    dp_delta: float = Field(default=1e-5, gt=0, lt=1)
    # SecAgg+: the server sees only the sum of the sites' masked updates (legacy flwr path).
    secure_aggregation: bool = False
    # Fraction of the round's sites each site shares its mask keys with (1.0: all).
    secagg_num_shares: float = Field(default=1.0, gt=0, le=1)
    # Fraction of those shares needed to unmask; sites beyond it may drop out mid-round.
    secagg_reconstruction_threshold: float = Field(default=0.67, gt=0, le=1)
    # SecAgg+ scales each update by num-examples / this before quantizing: keep it at or
    # above the largest site's example count (flwr warns of overflow beyond it).
    secagg_max_weight: float = Field(default=1000.0, gt=0)
    output_dir: str = "federated-output"
    # Seconds the server waits for a round's replies before counting a site as dropped.
    round_timeout: float = Field(default=600.0, gt=0)
    seed: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @classmethod
    def from_run_config(cls, config: Mapping[str, UserConfigValue]) -> RunSettings:
        """Parse Flower's run config; keys it does not know are ignored."""
        return cls.model_validate(dict(config))

    @model_validator(mode="wrap")
    @classmethod
    def _as_settings_error(
        cls, data: Any, handler: ModelWrapValidatorHandler[RunSettings]
    ) -> RunSettings:
        try:
            return handler(data)
        except ValidationError as exc:
            raise SettingsError("; ".join(_describe(err) for err in exc.errors())) from None

    @field_validator("labels", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        return _names(value) if isinstance(value, str) else value

    @field_validator("input_shape", "hidden", mode="before")
    @classmethod
    def _split_ints(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return (value,)  # input-shape = 30 in TOML
        if not isinstance(value, str):
            return value
        try:
            return tuple(int(part) for part in _names(value))
        except ValueError:
            key = _kebab(str(info.field_name))
            raise SettingsError(
                f"run config {key!r}: expected comma-separated integers, got {value!r}"
            ) from None

    @model_validator(mode="after")
    def _check_together(self) -> RunSettings:
        _check(len(self.labels) >= 2, "labels", "at least two class names")
        _check(len(set(self.labels)) == len(self.labels), "labels", "distinct names")
        expected_dims = 1 if self.model is ModelKind.TABULAR_MLP else 3
        _check(
            len(self.input_shape) == expected_dims and min(self.input_shape) > 0,
            "input-shape",
            f"{expected_dims} positive integer(s) for {self.model.value}",
        )
        if self.secure_aggregation:
            _check_secure_aggregation(self)
        return self


def _names(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


#: What a strict type error says was expected, by pydantic's error type.
_EXPECTED_TYPE = {
    "int_type": "int",
    "float_type": "float",
    "bool_type": "bool",
    "string_type": "str",
    "tuple_type": "a comma-separated list",
}


def _describe(err: ErrorDetails) -> str:
    """One pydantic error as ``run config KEY: expected ..., got ...``."""
    key = _kebab(str(err["loc"][0])) if err["loc"] else "(whole config)"
    value = err.get("input")
    ctx = err.get("ctx", {})
    kind = err["type"]
    if kind in _EXPECTED_TYPE:
        got = f"{type(value).__name__} {value!r}"
        return f"run config {key!r}: expected {_EXPECTED_TYPE[kind]}, got {got}"
    if kind == "enum":
        allowed = ctx.get("expected", "").replace(" or ", ", ")
        return f"run config {key!r}: expected one of {allowed}, got {value!r}"
    bounds = {
        "greater_than": f"more than {ctx.get('gt')}",
        "greater_than_equal": f"at least {ctx.get('ge')}",
        "less_than": f"less than {ctx.get('lt')}",
        "less_than_equal": f"at most {ctx.get('le')}",
    }
    expected = bounds.get(kind, err["msg"])
    return f"run config {key!r}: expected {expected}, got {value!r}"


def _check(ok: bool, key: str, expected: str) -> None:
    if not ok:
        raise SettingsError(f"run config {key!r}: expected {expected}")


def _check_secure_aggregation(settings: RunSettings) -> None:
    """SecAgg+ hides individual updates, so nothing may need to look at one."""
    key = "secure-aggregation"
    _check(
        settings.aggregation is Aggregation.FEDAVG,
        key,
        f"aggregation 'fedavg' (a robust rule needs each site's update), "
        f"got {settings.aggregation.value!r}",
    )
    _check(
        settings.privacy is not Privacy.SERVER,
        key,
        "privacy 'none' or 'client' (server-side DP clips each site's update)",
    )
    _check(
        settings.update_encoding is Encoding.FLOAT32,
        key,
        f"update-encoding 'float32' (SecAgg+ quantizes updates itself), "
        f"got {settings.update_encoding.value!r}",
    )


__all__ = ["Aggregation", "Encoding", "ModelKind", "Privacy", "RunSettings", "UserConfigValue"]
