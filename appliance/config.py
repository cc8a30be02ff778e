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
    # Attribute docstrings become field descriptions: the README's configuration table
    # is generated from them (``appliance config reference``).
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _check_address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT (for instance 127.0.0.1:8001), got {value!r}")
    return value


class TLSConfig(_Section):
    """TLS on the inference port; the files are re-read when they change (no restart)."""

    cert: Path
    """PEM certificate chain the server presents."""
    key: Path
    """PEM private key of ``cert``; readable by the daemon's user only."""
    client_ca: Path | None = None
    """PEM CA bundle; set, clients must present a certificate it signed (mTLS)."""


class ServerConfig(_Section):
    address: str = "127.0.0.1:8001"
    """HOST:PORT of the inference gRPC service (KServe V2, health, reflection)."""
    # Triton's triple: HTTP 8000, gRPC 8001, metrics 8002.
    http_address: str = "127.0.0.1:8000"
    """HOST:PORT of the HTTP port: KServe V2 REST and the OpenAI-compatible API (``/v1``)."""
    metrics_address: str = "127.0.0.1:8002"
    """HOST:PORT of the Prometheus ``/metrics`` endpoint."""
    tls: TLSConfig | None = None
    """Absent: plaintext (then keep the address on loopback)."""
    grace_period_s: float = Field(default=10.0, ge=0)
    """Seconds SIGTERM waits for in-flight requests before closing connections."""
    # 64 MiB holds a batch of 32 images of 512x512x3 fp32 with room to spare.
    max_message_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Largest request or response in bytes; larger ones get RESOURCE_EXHAUSTED (HTTP: 413)."""
    # Each RPC in flight may hold a request of up to max_message_bytes; beyond the
    # batchers' queues more concurrency only adds memory, not throughput.
    max_concurrent_rpcs: int = Field(default=1024, ge=1)
    """RPCs (HTTP requests) in flight at once per port; beyond it, RESOURCE_EXHAUSTED at once."""
    # Hospital firewalls drop idle TCP connections silently; a ping every minute finds
    # the dead ones without measurable traffic.
    keepalive_time_s: float = Field(default=60.0, gt=0)
    """Seconds between the server's keepalive pings on an idle connection."""
    keepalive_timeout_s: float = Field(default=20.0, gt=0)
    """Seconds to wait for a ping's answer before closing the connection."""
    # gRPC's own default (5 minutes) refuses the keepalive settings of many clients;
    # 10 s lets well-behaved clients ping while stopping ping floods.
    min_client_ping_interval_s: float = Field(default=10.0, ge=0)
    """Clients pinging more often than this are sent GOAWAY (too_many_pings)."""
    # A finite age spreads long-lived clients over replicas behind a load balancer
    # (Kubernetes); clients reconnect transparently.
    max_connection_age_s: float = Field(default=1800.0, ge=0)
    """Seconds after which a connection is asked to reconnect (GOAWAY); 0: never."""
    max_connection_age_grace_s: float = Field(default=60.0, ge=0)
    """Seconds an aged connection's in-flight RPCs get to finish before it closes."""
    # One tritonclient stream per client is the usual; a few spare for reconnects.
    max_streams_per_connection: int = Field(default=16, ge=1)
    """Streams (``ModelStreamInfer``, health watches, reflection) open at once on one connection."""
    # Streams from one client host (and one caller, with auth on): far below
    # max_concurrent_rpcs, so one client cannot hold every RPC slot with idle streams.
    max_streams_per_peer: int = Field(default=64, ge=1)
    """Streams open at once from one peer (client address, and caller when auth is on)."""
    # Long enough for any single inference; a stream that carries nothing for this long
    # only holds a slot.
    stream_idle_timeout_s: float = Field(default=300.0, gt=0)
    """Seconds a stream may carry no request and no response before it is closed."""
    # Off: with auth off (loopback, the default) anyone on the box could unload models.
    repository_control: bool = False
    """RepositoryModelLoad/Unload on the inference port; with auth on they need ``admin``."""

    _address = field_validator("address", "http_address", "metrics_address")(_check_address)


class AdminTLSConfig(_Section):
    cert: Path
    """PEM certificate the admin service presents."""
    key: Path
    """PEM private key of that certificate."""
    client_ca: Path
    """Admin clients need a certificate from this CA and the ``admin`` role in ``[auth]``."""


class AdminConfig(_Section):
    socket: Path = Path("/run/appliance/admin.sock")
    """Unix socket of the admin service (``appliance models``, ``appliance status``), mode 0660."""
    address: str | None = None
    """HOST:PORT to serve admin on TCP with mTLS instead of the socket; needs ``[admin.tls]``."""
    tls: AdminTLSConfig | None = None
    """Certificates of the TCP admin service (``admin.address``); absent: socket only."""

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
    """Model lifecycle: admin pushes, activation, rollback (owned by appliance.lifecycle)."""

    keep_versions: int = Field(default=3, ge=0)
    """Previously active versions kept on disk per model, for rollback."""
    audit_log: Path = Path("/var/log/appliance/audit.jsonl")
    """Append-only JSON lines, one per admin action, accepted or refused."""
    # 16 GiB holds the largest external-data models a box serves, and keeps one push
    # from filling the repository's disk. The unpacked total is also capped by the
    # package's own size (a plain tar never grows), so a small package cannot expand.
    max_package_bytes: int = Field(default=16 * 1024**3, ge=1024)
    """Largest package a push may upload, and the most its files may unpack to (bytes)."""
    # The CLI sends 1 MiB chunks: even a slow link delivers one within seconds. An upload
    # silent for a minute is a dead client or one holding staging space on purpose.
    upload_idle_timeout_s: float = Field(default=60.0, gt=0)
    """Seconds an upload may send nothing before it is refused and its staging removed."""


class RepositoryConfig(_Section):
    path: Path = Path("/var/lib/appliance/models")
    """Model repository folder: ``<model>/<version>/`` with the unpacked packages."""
    serve_default_model: bool = True
    """Serve the embedded default model while the repository is empty."""
    version_policy: Literal["latest", "all"] = "latest"
    """Versions of each model to load: the latest (or the activated) one, or all."""


class SigningConfig(_Section):
    trusted_keys: list[Path] = Field(
        default_factory=lambda: [Path("/etc/appliance/keys/release.pub")]
    )
    """PEM public keys; a package must be signed by one of them to be accepted."""
    # Off without a config file, so `appliance serve --repository DIR` serves an existing
    # Triton-style repository as it is; the box's config (packaging/appliance.toml) sets
    # it. Pushed packages are verified at every load either way.
    require_signed: bool = False
    """Refuse version folders not signed by a trusted key (unsigned Triton-style folders)."""


class RuntimeConfig(_Section):
    providers: list[str] = Field(default_factory=list)
    """ONNX Runtime execution providers in order of preference; empty: chosen at start."""
    intra_op_threads: int = Field(default=0, ge=0)
    """ONNX Runtime intra-op threads per session; 0 lets ONNX Runtime use every core."""
    # Faster, with a tiny numeric drift that the package self-test bounds.
    gpu_fp16: bool = True
    """Allow TensorRT to build fp16 engines on a GPU."""


class BatchingConfig(_Section):
    """Dynamic batching; the defaults apply to every model, ``[models.NAME]`` overrides."""

    enabled: bool = True
    """Batch the requests that queue while a model's session is busy."""
    max_batch_size: int = Field(default=32, ge=1)
    """Rows per batch at most (a package's own max_batch_size wins when smaller)."""
    # 0: an idle box adds no delay; a busy one still batches whatever queued meanwhile.
    max_queue_delay_us: int = Field(default=0, ge=0)
    """Extra microseconds to wait for a fuller batch."""
    max_queue_size: int = Field(default=1024, ge=1)
    """Requests waiting per model; beyond it, RESOURCE_EXHAUSTED at once."""
    # 1 suits a GPU and a small CPU box.
    instances: int = Field(default=1, ge=1, le=64)
    """Sessions run in parallel per model."""


class ModelOverrides(_Section):
    """``[models.NAME]``: batching keys, ``cache_bytes`` and the quality loop's keys for one
    model; unset batching and cache keys take the defaults (``[batching]``, ``[monitoring]``)."""

    enabled: bool | None = None
    """Overrides ``batching.enabled`` for this model."""
    max_batch_size: int | None = Field(default=None, ge=1)
    """Overrides ``batching.max_batch_size`` for this model; a generative model: rows per
    engine step (default 4 on CPU, onnxruntime-genai's static batch; 16 on CUDA)."""
    max_queue_delay_us: int | None = Field(default=None, ge=0)
    """Overrides ``batching.max_queue_delay_us`` for this model."""
    max_queue_size: int | None = Field(default=None, ge=1)
    """Overrides ``batching.max_queue_size`` for this model; a generative model: sequences
    waiting beyond the running batch (default 64)."""
    # A generative model's capacity; None: the model's own limits.
    max_session_tokens: int | None = Field(default=None, ge=2)
    """A generative model: prompt plus generated tokens per request at most (default the
    model's context length)."""
    kv_cache_fraction: float | None = Field(default=None, gt=0, le=1)
    """A generative model on CUDA with paged attention: share of free GPU memory for its
    KV cache (default onnxruntime-genai's)."""
    instances: int | None = Field(default=None, ge=1, le=64)
    """Overrides ``batching.instances`` for this model."""
    # Off unless set: only a deterministic model may answer from a cache.
    cache_bytes: int | None = Field(default=None, ge=0)
    """Overrides ``monitoring.cache_bytes`` for this model (0: no response cache)."""
    # -- quality loop (appliance.quality): never sent anywhere, never logged ----------
    eval_data: Path | None = None
    """Labelled CSV/Parquet kept on the box (features and ``label``; for embeddings
    ``text_a``, ``text_b`` and a similarity ``label``; for generative models ``prompt`` and
    ``reference``; optional ``group``); set, every activation must pass the site evaluation
    gate on it."""
    eval_metric: (
        Literal["accuracy", "f1", "auroc", "cosine", "spearman", "token_f1", "exact_match"] | None
    ) = None
    """Score of the gate: classifiers ``accuracy`` (unset), ``f1`` (macro), ``auroc`` (one vs
    rest); embeddings ``cosine`` (Pearson) or ``spearman`` (unset) of the pairs' cosine
    similarity against their label; generative models ``token_f1`` (unset) or
    ``exact_match`` of the greedy answer against the reference."""
    # Two points of accuracy: beyond sampling noise on a few hundred rows, well before
    # a clinician would notice.
    eval_max_drop: float = Field(default=0.02, ge=0, le=1)
    """Largest drop of the score, overall or in any group, that a new version may show."""
    min_live_accuracy: float | None = Field(default=None, ge=0, le=1)
    """Live accuracy (from outcome feedback) below which ``retrain_command`` runs; unset: never."""
    # Fewer outcomes than this say more about chance than about the model.
    min_feedback_reports: int = Field(default=50, ge=1)
    """Outcomes reported for a version before its live accuracy may trigger a retrain."""
    # 10,000 predictions: a day of a busy ward's requests, a few hundred kilobytes.
    feedback_window: int = Field(default=10_000, ge=1)
    """Request ids whose predicted class is kept for feedback (oldest forgotten first),
    and reported outcomes live accuracy is computed over."""
    retrain_command: list[str] = Field(default_factory=list)
    """Program and arguments run when live accuracy falls or drift persists; empty: none."""
    # A federated round takes minutes to hours: one run a day at most, unless asked.
    retrain_cooldown_s: float = Field(default=86_400.0, ge=0)
    """Seconds after a retrain run starts before another may start."""
    retrain_after_s: float | None = Field(default=None, gt=0)
    """Seconds a drift alert must hold before ``retrain_command`` runs; unset: drift never does."""
    retrain_timeout_s: float = Field(default=6 * 3600.0, gt=0)
    """Seconds a retrain run may take before it is killed."""


class CascadeConfig(_Section):
    """``[cascades.NAME]``: served as model NAME; each request goes to the stages in order
    and the first whose every row reaches ``min_confidence`` answers (the last always
    does). The stages are models of the repository with the same inputs (``appliance.routing``)."""

    stages: list[str] = Field(min_length=2)
    """Model names, cheapest first, for instance ``["small", "large"]``."""
    # 0.9: a common starting point; `appliance compress --cascade` calibrates it on the
    # evaluation data so the cascade stays within the budget of the last stage.
    min_confidence: float = Field(default=0.9, gt=0, le=1)
    """Top-class probability at or above which a stage's answer is final."""
    probabilities: str | None = None
    """Output holding the class probabilities; unset: ``probabilities``, else the stages'
    only FP32 output shaped (batch, classes)."""

    @field_validator("stages")
    @classmethod
    def _distinct(cls, stages: list[str]) -> list[str]:
        if len(set(stages)) != len(stages):
            raise ValueError(f"expected distinct model names, got {stages}")
        return stages


Role = Literal["infer", "admin"]


def _check_roles(roles: list[Role]) -> list[Role]:
    if not roles:
        raise ValueError('expected at least one role ("infer", "admin"), got none')
    return roles


def _infer_only() -> list[Role]:
    return ["infer"]


class TokenEntry(_Section):
    """``[[auth.tokens]]``: one bearer token, stored as its SHA-256 only."""

    name: str = Field(min_length=1)
    """Who holds the token; logged as the caller (``token:NAME``)."""
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    """Hex SHA-256 of the token (``appliance auth hash-token``)."""
    roles: list[Role]
    """Roles the token grants: ``infer``, ``admin``."""

    _roles = field_validator("roles")(_check_roles)

    @field_validator("sha256")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class CertificateEntry(_Section):
    """``[[auth.certificates]]``: roles of one client certificate, by its subject CN."""

    common_name: str = Field(min_length=1)
    """Subject common name of a client certificate signed by ``server.tls.client_ca``."""
    roles: list[Role]
    """Roles the certificate grants: ``infer``, ``admin``."""

    _roles = field_validator("roles")(_check_roles)


class AuthConfig(_Section):
    """Who may call what: bearer tokens and client certificates, roles infer and admin."""

    # "auto" keeps `appliance serve` with no arguments usable on a developer's machine
    # and makes any port reachable from elsewhere refuse anonymous callers.
    enabled: bool | Literal["auto"] = "auto"
    """``auto``: on unless the port is loopback, plaintext and no credential is listed."""
    tokens: list[TokenEntry] = Field(default_factory=list)
    """Bearer tokens (``authorization: Bearer ...``), one ``[[auth.tokens]]`` table each."""
    certificates: list[CertificateEntry] = Field(default_factory=list)
    """Client certificates with roles of their own, one ``[[auth.certificates]]`` each."""
    # The client CA is the hospital's own for this box: a certificate it signed is a
    # known client, but only a listed one may change the served models.
    certificate_roles: list[Role] = Field(default_factory=_infer_only)
    """Roles of a client certificate signed by ``client_ca`` but not listed."""


class LoggingConfig(_Section):
    # "auto": journald and Kubernetes get JSON, a person at a terminal gets text.
    format: Literal["auto", "json", "text"] = "auto"
    """``json``: one object per line; ``text``: readable lines; ``auto``: json unless a TTY."""
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Least severe level logged (``--log-level`` overrides)."""
    # A busy box answers thousands of requests a second; "errors" keeps the journal small.
    requests: Literal["all", "errors", "off"] = "errors"
    """Request log lines (model, version, shapes, dtypes, latency, caller, status)."""


class MonitoringConfig(_Section):
    """Prometheus metrics, drift monitoring against the package's reference profile, and
    the response cache."""

    enabled: bool = True
    """Serve ``/metrics`` on ``server.metrics_address`` and measure drift."""
    # Usual PSI reading: under 0.1 stable, 0.1 to 0.25 a shift worth watching, above
    # 0.25 a significant shift; 0.2 alerts a little before the textbook "significant".
    drift_threshold: float = Field(default=0.2, gt=0)
    """PSI at or above which a model's drift state is ``alert`` (logged once)."""
    drift_warn: float = Field(default=0.1, gt=0)
    """PSI at or above which a model's drift state is ``warn``."""
    # Fewer rows than this give PSI values dominated by sampling noise.
    drift_min_rows: int = Field(default=200, ge=1)
    """Rows a model must see before its PSI is reported."""
    # Counts halve each time this many rows arrive: recent traffic weighs most and the
    # statistics stay a fixed size whatever the traffic.
    drift_window_rows: int = Field(default=5000, ge=100)
    """Rows the drift statistics remember, about (older rows fade out)."""
    cache_bytes: int = Field(default=0, ge=0)
    """Response cache per model version, in bytes; 0: off. Only for deterministic models."""


class Config(_Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
    repository: RepositoryConfig = Field(default_factory=RepositoryConfig)
    signing: SigningConfig = Field(default_factory=SigningConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    models: dict[str, ModelOverrides] = Field(default_factory=dict)
    """``[models.NAME]`` tables: settings of one model that differ from the defaults."""
    cascades: dict[str, CascadeConfig] = Field(default_factory=dict)
    """``[cascades.NAME]`` tables: a model NAME answered by the cheapest confident stage."""
    auth: AuthConfig = Field(default_factory=AuthConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)

    @model_validator(mode="after")
    def _cascade_names(self) -> Config:
        for name, cascade in self.cascades.items():
            if name in cascade.stages:
                raise ValueError(f"cascade {name!r} lists itself among its stages {cascade.stages}")
        return self

    def batching_for(self, model: str) -> BatchingConfig:
        """The batching settings of one model: defaults with its overrides applied."""
        overrides = self.models.get(model)
        if overrides is None:
            return self.batching
        changes = overrides.model_dump(exclude_none=True, include=set(BatchingConfig.model_fields))
        return self.batching.model_copy(update=changes)

    def overrides_for(self, model: str) -> ModelOverrides:
        """``[models.NAME]`` of one model; every default when it has none."""
        return self.models.get(model) or ModelOverrides()

    def cache_bytes_for(self, model: str) -> int:
        """Response cache size of one model: ``[models.NAME]`` over ``[monitoring]``."""
        overrides = self.models.get(model)
        if overrides is None or overrides.cache_bytes is None:
            return self.monitoring.cache_bytes
        return overrides.cache_bytes


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
    "AuthConfig",
    "AdminTLSConfig",
    "BatchingConfig",
    "CascadeConfig",
    "CertificateEntry",
    "Config",
    "LifecycleConfig",
    "LoggingConfig",
    "ModelOverrides",
    "MonitoringConfig",
    "RepositoryConfig",
    "Role",
    "RuntimeConfig",
    "ServerConfig",
    "SigningConfig",
    "TLSConfig",
    "TokenEntry",
    "describe_validation_error",
    "load_config",
    "parse_config",
]
