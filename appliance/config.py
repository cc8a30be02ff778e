"""Configuration: one TOML file, every key with a default, typed and validated.

Owns the schema (``Config``) and loading it (``load_config``). The keys of DESIGN.md are
fixed points that operators' scripts rely on; the rest are ours. An unknown key or a bad
value is a ``ConfigError`` naming the key, what was expected and what arrived.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from appliance.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/appliance/appliance.toml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT (for instance 127.0.0.1:8001), got {value!r}")
    return value


class TLSConfig(_Section):
    cert: Path
    key: Path
    #: Set: clients must present a certificate signed by this CA (mTLS).
    client_ca: Path | None = None


class ServerConfig(_Section):
    address: str = "127.0.0.1:8001"
    metrics_address: str = "127.0.0.1:8002"
    tls: TLSConfig | None = None
    #: Seconds SIGTERM waits for in-flight requests before closing connections.
    grace_period_s: float = Field(default=10.0, ge=0)
    #: Largest request or response. 64 MiB holds a batch of 32 images of 512x512x3 fp32
    #: with room to spare; larger messages get RESOURCE_EXHAUSTED from gRPC itself.
    max_message_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)

    _address = field_validator("address", "metrics_address")(_check_address)


class AdminTLSConfig(_Section):
    cert: Path
    """PEM certificate the admin service presents."""
    key: Path
    """PEM private key of that certificate."""
    client_ca: Path
    """Admin clients must present a certificate signed by this CA: TCP admin is mTLS only."""


class AdminConfig(_Section):
    socket: Path = Path("/run/appliance/admin.sock")
    """The admin service's Unix socket, mode 0660: its owner and group may administer."""
    address: str | None = None
    """HOST:PORT to serve admin on TCP (mTLS) instead of the socket; needs [admin.tls]."""
    tls: AdminTLSConfig | None = None

    _address = field_validator("address")(_check_address)

    @model_validator(mode="after")
    def _tcp_needs_mtls(self) -> AdminConfig:
        if self.address is not None and self.tls is None:
            raise ValueError(
                f"admin.address {self.address!r} needs [admin.tls] with cert, key and "
                "client_ca: admin over TCP is mutual TLS only"
            )
        return self


class LifecycleConfig(_Section):
    keep_versions: int = Field(default=3, ge=0)
    """Previously active versions kept on disk per model, for rollback."""
    audit_log: Path = Path("/var/log/appliance/audit.jsonl")
    """Append-only JSON lines, one per admin action, accepted or refused."""


class RepositoryConfig(_Section):
    path: Path = Path("/var/lib/appliance/models")
    #: When the repository holds no model, serve the embedded default model, so a new
    #: box answers something real on first start. False: start with no model.
    serve_default_model: bool = True
    #: Which versions of each model to load: the latest (or the activated) one, or all.
    version_policy: Literal["latest", "all"] = "latest"


class SigningConfig(_Section):
    trusted_keys: list[Path] = Field(
        default_factory=lambda: [Path("/etc/appliance/keys/release.pub")]
    )


class RuntimeConfig(_Section):
    #: Execution providers in order of preference, for instance ["CUDAExecutionProvider",
    #: "CPUExecutionProvider"]. Empty: chosen at start from what the box can run.
    providers: list[str] = Field(default_factory=list)
    #: ONNX Runtime intra-op threads per session; 0 lets ONNX Runtime use every core.
    intra_op_threads: int = Field(default=0, ge=0)
    #: Allow TensorRT to build fp16 engines on a GPU (faster, tiny numeric drift that the
    #: package self-test bounds).
    gpu_fp16: bool = True


class BatchingConfig(_Section):
    """Dynamic batching; the defaults apply to every model, ``[models.NAME]`` overrides."""

    enabled: bool = True
    #: Rows per batch at most (a package's own max_batch_size wins when smaller).
    max_batch_size: int = Field(default=32, ge=1)
    #: Extra wait for a fuller batch. 0: an idle box adds no delay; a busy one still
    #: batches whatever queued while the session was running.
    max_queue_delay_us: int = Field(default=0, ge=0)
    #: Requests waiting per model; beyond it, RESOURCE_EXHAUSTED at once.
    max_queue_size: int = Field(default=1024, ge=1)
    #: Sessions run in parallel per model. 1 suits a GPU and a small CPU box.
    instances: int = Field(default=1, ge=1, le=64)


class ModelOverrides(_Section):
    enabled: bool | None = None
    max_batch_size: int | None = Field(default=None, ge=1)
    max_queue_delay_us: int | None = Field(default=None, ge=0)
    max_queue_size: int | None = Field(default=None, ge=1)
    instances: int | None = Field(default=None, ge=1, le=64)


class Config(_Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
    repository: RepositoryConfig = Field(default_factory=RepositoryConfig)
    signing: SigningConfig = Field(default_factory=SigningConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    models: dict[str, ModelOverrides] = Field(default_factory=dict)

    def batching_for(self, model: str) -> BatchingConfig:
        """The batching settings of one model: defaults with its overrides applied."""
        overrides = self.models.get(model)
        if overrides is None:
            return self.batching
        changes = overrides.model_dump(exclude_none=True)
        return self.batching.model_copy(update=changes)


def load_config(path: Path | None) -> Config:
    """Read and validate a TOML config file; ``None`` gives every default."""
    if path is None:
        return Config()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} could not be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    return parse_config(raw, source=str(path))


def parse_config(raw: dict[str, object], source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_validation_error(exc)}") from exc


def describe_validation_error(exc: ValidationError) -> str:
    """One readable line per problem: the dotted key, what was expected, what arrived."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key {key!r}")
        else:
            lines.append(f"key {key!r}: {err['msg']}, got {err.get('input')!r:.80}")
    return "; ".join(lines)


__all__ = [
    "DEFAULT_CONFIG_PATH",
    "AdminConfig",
    "AdminTLSConfig",
    "BatchingConfig",
    "Config",
    "LifecycleConfig",
    "ModelOverrides",
    "RepositoryConfig",
    "RuntimeConfig",
    "ServerConfig",
    "SigningConfig",
    "TLSConfig",
    "describe_validation_error",
    "load_config",
    "parse_config",
]
