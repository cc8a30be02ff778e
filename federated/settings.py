"""Typed run settings, parsed once from Flower's run config (``[tool.flwr.app.config]``).

The same run config reaches the ServerApp and every ClientApp, so both sides parse it
here and agree on the model, the encoding and the privacy setup. Node config (per site)
holds only ``data-path``; see ``federated.data``. Values are checked with exceptions
naming the key, never with ``assert``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from federated.errors import SettingsError

UserConfigValue = bool | int | float | str
_T = TypeVar("_T", bool, int, float, str)
_E = TypeVar("_E", bound=enum.Enum)


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


@dataclass(frozen=True)
class RunSettings:
    """Everything a run fixes. Defaults suit the bundled breast-cancer demo."""

    num_server_rounds: int = 3
    model: ModelKind = ModelKind.TABULAR_MLP
    # Feature count for the MLP, or "C,H,W" for the CNN.
    input_shape: tuple[int, ...] = (30,)
    # Class names in logit order; a site's label must be one of them (as text).
    labels: tuple[str, ...] = ("0", "1")
    hidden: tuple[int, ...] = (64, 32)
    # Two local epochs at lr 0.1 reach centralized accuracy in the benchmark (non-IID, 3 sites).
    local_epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 0.1
    # SGD momentum is off by default: under DP-SGD it carries noise across steps.
    momentum: float = 0.0
    fraction_train: float = 1.0
    # 0 skips per-round evaluation on the sites; the round-0 baseline always runs.
    fraction_evaluate: float = 1.0
    # Two of three sites suffice, so a round completes when one site drops out.
    min_train_nodes: int = 2
    min_evaluate_nodes: int = 2
    min_available_nodes: int = 2
    aggregation: Aggregation = Aggregation.FEDAVG
    # Fraction cut from each end per coordinate for trimmed mean (1/3 of 3 sites = median).
    trim_beta: float = 0.2
    # Sites Krum assumes may be malicious; Krum needs more than 2f + 2 sites.
    krum_malicious: int = 0
    update_encoding: Encoding = Encoding.FLOAT32
    privacy: Privacy = Privacy.NONE
    dp_clip_norm: float = 1.0
    # 0 means "calibrate": pick the smallest multiplier that meets dp_target_epsilon.
    dp_noise_multiplier: float = 0.0
    dp_target_epsilon: float = 8.0
    # 1e-5 is below 1/n for every site size we expect (n < 100,000).
    dp_delta: float = 1e-5
    # SecAgg+: the server sees only the sum of the sites' masked updates (legacy flwr path).
    secure_aggregation: bool = False
    # Fraction of the round's sites each site shares its mask keys with (1.0: all).
    secagg_num_shares: float = 1.0
    # Fraction of those shares needed to unmask; sites beyond it may drop out mid-round.
    secagg_reconstruction_threshold: float = 0.67
    # SecAgg+ scales each update by num-examples / this before quantizing: keep it at or
    # above the largest site's example count (flwr warns of overflow beyond it).
    secagg_max_weight: float = 1000.0
    output_dir: str = "federated-output"
    # Seconds the server waits for a round's replies before counting a site as dropped.
    round_timeout: float = 600.0
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self.num_server_rounds >= 1, "num-server-rounds", "at least 1")
        _check(len(self.labels) >= 2, "labels", "at least two class names")
        _check(len(set(self.labels)) == len(self.labels), "labels", "distinct names")
        expected_dims = 1 if self.model is ModelKind.TABULAR_MLP else 3
        _check(
            len(self.input_shape) == expected_dims and min(self.input_shape) > 0,
            "input-shape",
            f"{expected_dims} positive integer(s) for {self.model.value}",
        )
        _check(self.local_epochs >= 1, "local-epochs", "at least 1")
        _check(self.batch_size >= 1, "batch-size", "at least 1")
        _check(self.learning_rate > 0, "learning-rate", "a positive number")
        _check(0 < self.fraction_train <= 1, "fraction-train", "in (0, 1]")
        _check(0 <= self.fraction_evaluate <= 1, "fraction-evaluate", "in [0, 1]")
        _check(0 <= self.trim_beta < 0.5, "trim-beta", "in [0, 0.5)")
        _check(self.dp_clip_norm > 0, "dp-clip-norm", "a positive number")
        _check(self.dp_noise_multiplier >= 0, "dp-noise-multiplier", "0 (calibrate) or more")
        _check(self.dp_target_epsilon > 0, "dp-target-epsilon", "a positive number")
        _check(0 < self.dp_delta < 1, "dp-delta", "in (0, 1)")
        _check(self.round_timeout > 0, "round-timeout", "a positive number of seconds")
        _check(0 < self.secagg_num_shares <= 1, "secagg-num-shares", "a fraction in (0, 1]")
        _check(
            0 < self.secagg_reconstruction_threshold <= 1,
            "secagg-reconstruction-threshold",
            "a fraction in (0, 1]",
        )
        _check(self.secagg_max_weight > 0, "secagg-max-weight", "a positive number")
        if self.secure_aggregation:
            _check_secure_aggregation(self)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @classmethod
    def from_run_config(cls, config: Mapping[str, UserConfigValue]) -> RunSettings:
        """Parse Flower's run config; unknown keys are ignored (Flower adds its own)."""
        d = cls()
        return cls(
            num_server_rounds=_get(config, "num-server-rounds", d.num_server_rounds),
            model=_enum(config, "model", ModelKind, d.model),
            input_shape=_ints(config, "input-shape", d.input_shape),
            labels=_names(config, "labels", d.labels),
            hidden=_ints(config, "hidden", d.hidden),
            local_epochs=_get(config, "local-epochs", d.local_epochs),
            batch_size=_get(config, "batch-size", d.batch_size),
            learning_rate=_get(config, "learning-rate", d.learning_rate),
            momentum=_get(config, "momentum", d.momentum),
            fraction_train=_get(config, "fraction-train", d.fraction_train),
            fraction_evaluate=_get(config, "fraction-evaluate", d.fraction_evaluate),
            min_train_nodes=_get(config, "min-train-nodes", d.min_train_nodes),
            min_evaluate_nodes=_get(config, "min-evaluate-nodes", d.min_evaluate_nodes),
            min_available_nodes=_get(config, "min-available-nodes", d.min_available_nodes),
            aggregation=_enum(config, "aggregation", Aggregation, d.aggregation),
            trim_beta=_get(config, "trim-beta", d.trim_beta),
            krum_malicious=_get(config, "krum-malicious", d.krum_malicious),
            update_encoding=_enum(config, "update-encoding", Encoding, d.update_encoding),
            privacy=_enum(config, "privacy", Privacy, d.privacy),
            dp_clip_norm=_get(config, "dp-clip-norm", d.dp_clip_norm),
            dp_noise_multiplier=_get(config, "dp-noise-multiplier", d.dp_noise_multiplier),
            dp_target_epsilon=_get(config, "dp-target-epsilon", d.dp_target_epsilon),
            dp_delta=_get(config, "dp-delta", d.dp_delta),
            secure_aggregation=_get(config, "secure-aggregation", d.secure_aggregation),
            secagg_num_shares=_get(config, "secagg-num-shares", d.secagg_num_shares),
            secagg_reconstruction_threshold=_get(
                config, "secagg-reconstruction-threshold", d.secagg_reconstruction_threshold
            ),
            secagg_max_weight=_get(config, "secagg-max-weight", d.secagg_max_weight),
            output_dir=_get(config, "output-dir", d.output_dir),
            round_timeout=_get(config, "round-timeout", d.round_timeout),
            seed=_get(config, "seed", d.seed),
        )


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


def _get(config: Mapping[str, UserConfigValue], key: str, default: _T) -> _T:
    """Read one scalar, accepting an int where a float is wanted (TOML writes 1 for 1.0)."""
    if key not in config:
        return default
    value = config[key]
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # type: ignore[return-value]
    if type(value) is not kind:
        raise SettingsError(
            f"run config {key!r}: expected {kind.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def _enum(config: Mapping[str, UserConfigValue], key: str, kind: type[_E], default: _E) -> _E:
    raw = _get(config, key, str(default.value))
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in kind)
        raise SettingsError(f"run config {key!r}: expected one of {allowed}, got {raw!r}") from None


def _names(
    config: Mapping[str, UserConfigValue], key: str, default: tuple[str, ...]
) -> tuple[str, ...]:
    raw = _get(config, key, ",".join(default))
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _ints(
    config: Mapping[str, UserConfigValue], key: str, default: tuple[int, ...]
) -> tuple[int, ...]:
    if isinstance(config.get(key), int) and not isinstance(config.get(key), bool):
        return (int(config[key]),)
    parts = _names(config, key, tuple(str(v) for v in default))
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise SettingsError(
            f"run config {key!r}: expected comma-separated integers, got {','.join(parts)!r}"
        ) from None


__all__ = ["Aggregation", "Encoding", "ModelKind", "Privacy", "RunSettings"]
