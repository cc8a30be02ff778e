"""Logging: one JSON object per line (journald, Kubernetes) or readable text, and the
request log.

Owns the log format (``[logging]``) and what a request line may say. A JSON line holds
``ts``, ``level``, ``logger``, ``msg`` and the record's structured fields (whatever was
passed as ``extra=``), plus ``exc`` with the traceback when there is one. Request lines
carry the model, version, input names, shapes and dtypes, latency, caller and status:
they are built from the request's metadata fields only, so tensor contents (patient
data) never reach a log, whatever the request held; every client string and list in
them is cut (``appliance.clip``), so a line costs the same whatever the client sent.

C libraries (gRPC core, ONNX Runtime) write to file descriptor 2 directly; the daemon
points it at a pipe (``NativeStderr``) and turns each of their lines into a record of
the ``grpc``, ``onnxruntime`` or ``native`` logger, so the stream stays one format.
ONNX Runtime's lines (a kernel's error names the offending value: ``idx=31337``) and
any line of unknown origin keep only what names the fault (``clip.strip_values``).
Python itself keeps writing to the original stderr, so a crash's traceback never waits
on that pipe.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from appliance.clip import LIST_LIMIT, clip, clip_list, strip_values
from appliance.config import LoggingConfig

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``TIME LEVEL logger: message key=value ...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _extras(record)
        if not fields:
            return text
        head, sep, trace = text.partition("\n")
        pairs = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in fields.items())
        return f"{head} {pairs}{sep}{trace}"


# gRPC core (absl): "I1122 02:14:30.061651   17192 file.cc:2563] message".
_NATIVE_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ ([\w./-]+):\d+\] ?(.*)$")
_NATIVE_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": 50}
# ONNX Runtime: "\x1b[1;31m2026-12-02 01:54:31.321 [E:onnxruntime:, file.cc:677 Fn] message\x1b[m".
_ORT_LINE = re.compile(
    r"^(?:\x1b\[[\d;]*m)?\d{4}-\d\d-\d\d [\d:.]+ \[([VIWEF]):onnxruntime:[^,\]]*, "
    r"([\w./-]+):\d+[^\]]*\] ?(.*?)(?:\x1b\[m)?$"
)
_ORT_LEVELS = {"V": logging.DEBUG, **_NATIVE_LEVELS}


class NativeStderr:
    """File descriptor 2 through a pipe: C libraries' lines become log records."""

    def __init__(self) -> None:
        self._grpc = logging.getLogger("grpc")
        self._onnxruntime = logging.getLogger("onnxruntime")
        self._native = logging.getLogger("native")

    def install(self) -> TextIO:
        """Redirect fd 2; returns a stream on the original stderr for Python's own use."""
        original = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        stream = os.fdopen(original, "w", buffering=1, encoding="utf-8", errors="replace")
        threading.Thread(
            target=self._pump, args=(read_end,), name="native-stderr", daemon=True
        ).start()
        return stream

    def _pump(self, read_end: int) -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for raw in pipe:
                self.emit(raw.decode(errors="replace").rstrip())

    def emit(self, line: str) -> None:
        if not line:
            return
        match = _NATIVE_LINE.match(line)
        if match is not None:
            letter, source, message = match.groups()
            self._grpc.log(_NATIVE_LEVELS[letter], "%s", message, extra={"source": source})
            return
        match = _ORT_LINE.match(line)
        if match is not None:
            letter, source, message = match.groups()
            self._onnxruntime.log(
                _ORT_LEVELS[letter], "%s", strip_values(message), extra={"source": source}
            )
            return
        self._native.warning("%s", strip_values(line))


def configure_logging(
    config: LoggingConfig, level: str | None = None, capture_native: bool = False
) -> None:
    """Route every logger to stderr in the configured format (the daemon's only sink:
    systemd sends stderr to the journal, Kubernetes to the pod log). ``capture_native``:
    C libraries' lines too (``NativeStderr``), for the daemon."""
    fmt = config.format
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    stream = sys.stderr
    if capture_native:
        stream = sys.stderr = NativeStderr().install()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel((level or config.level).upper())


def describe_request(request: Any, response: Any = None) -> dict[str, Any]:
    """The loggable part of a V2 request: names, versions, shapes, dtypes. Never contents.

    Every string and list is cut (``appliance.clip``). The response, if any, gives the
    version that served a request that named none.
    """
    fields: dict[str, Any] = {}
    model = getattr(request, "model_name", None) or getattr(request, "name", None)
    if isinstance(model, str) and model:
        fields["model"] = clip(model)
    version = getattr(request, "model_version", None) or getattr(request, "version", None)
    if not version:
        version = getattr(response, "model_version", None)
    if isinstance(version, str | int) and version:
        fields["version"] = clip(str(version))
    inputs = getattr(request, "inputs", None)
    if inputs is not None:
        # (name, datatype, shape) of each input tensor; the data stay in the request.
        described: list[Any] = [
            {"name": clip(t.name), "datatype": clip(t.datatype), "shape": clip_list(t.shape)}
            for t in inputs[:LIST_LIMIT]
        ]
        if len(inputs) > LIST_LIMIT:
            described.append(f"...({len(inputs) - LIST_LIMIT} more)")
        fields["inputs"] = described
    return fields


class RequestLog:
    """One line per request on the ``appliance.requests`` logger (``logging.requests``).

    Transport-neutral: the gRPC observer and the HTTP front door both call ``log`` with
    plain values (``describe_request`` builds the fields of a V2 request).
    """

    def __init__(self, mode: Literal["all", "errors", "off"]):
        self.mode = mode
        self._log = logging.getLogger("appliance.requests")

    def wants(self, status: str, quiet: bool = False) -> bool:
        """Would a request with this outcome be logged? (Checked before any work.)"""
        return self.mode != "off" and not (status == "OK" and (quiet or self.mode == "errors"))

    def log(
        self,
        *,
        rpc: str,
        fields: dict[str, Any],
        caller: str,
        peer: str,
        status: str,
        seconds: float,
        quiet: bool = False,
    ) -> None:
        """``quiet``: a probe (health, liveness); logged only when it fails."""
        if not self.wants(status, quiet):
            return
        target = fields.get("model", "")
        if target and "version" in fields:
            target += f":{fields['version']}"
        latency_ms = round(seconds * 1000, 3)
        self._log.info(
            "%s %s-> %s in %.2f ms by %s",
            rpc,
            f"{target} " if target else "",
            status,
            latency_ms,
            caller,
            extra={
                "rpc": rpc,
                **fields,
                "caller": caller,
                "peer": clip(peer, 256),
                "status": status,
                "latency_ms": latency_ms,
            },
        )


__all__ = [
    "JsonFormatter",
    "NativeStderr",
    "RequestLog",
    "TextFormatter",
    "configure_logging",
    "describe_request",
]
