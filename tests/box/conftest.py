"""The box tests' parts: real certificates, and a daemon that tells systemd it is ready.

``Certificates`` makes a private CA, server and client certificates with the
``cryptography`` package (EC P-256, as a hospital PKI would issue them).
``BoxDaemon`` runs the real daemon with a config of our own (TLS, tokens) and waits for
its ``READY=1`` on a notify socket, as systemd would, since a TLS-only port cannot be
probed in plaintext.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests._daemon import daemon_environment, free_port, to_toml
from tests.models import affine_model

NOW = dt.datetime.now(dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "St. Example Hospital"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass
class Issued:
    cert: Path
    key: Path


class Authority:
    """A CA that writes what it issues as PEM files into ``folder``."""

    def __init__(self, folder: Path, name: str):
        self.folder = folder
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = self._sign(
            _name(name), self.key.public_key(), ca=True, not_before=NOW, days=30, issuer=None
        )
        self.cert_path = folder / f"{name}.crt"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def _sign(
        self,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        *,
        ca: bool,
        not_before: dt.datetime,
        days: float,
        issuer: x509.Name | None,
        server: bool = False,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer or subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before - dt.timedelta(minutes=5))
            .not_valid_after(not_before + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if server:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def issue(
        self, common_name: str, *, server: bool = False, expired: bool = False, file: str = ""
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        start = NOW - dt.timedelta(days=10) if expired else NOW
        cert = self._sign(
            _name(common_name),
            key.public_key(),
            ca=False,
            not_before=start,
            days=1,
            issuer=self.cert.subject,
            server=server,
        )
        stem = self.folder / (file or f"{self.name}-{common_name}")
        issued = Issued(stem.with_suffix(".crt"), stem.with_suffix(".key"))
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        issued.key.chmod(0o600)
        return issued


class BoxDaemon:
    """``appliance serve`` as systemd runs it: NOTIFY_SOCKET set, JSON logs on stderr."""

    def __init__(self, workdir: Path, config: dict[str, dict[str, Any]], watchdog_usec: int = 0):
        self.workdir = workdir
        self.port = free_port()
        self.http_port = free_port()
        self.audit_path = workdir / "audit.jsonl"
        base: dict[str, dict[str, Any]] = {
            "server": {
                "address": f"127.0.0.1:{self.port}",
                "http_address": f"127.0.0.1:{self.http_port}",
                "metrics_address": f"127.0.0.1:{free_port()}",
                "grace_period_s": 2.0,
            },
            "repository": {"path": workdir / "repository", "serve_default_model": False},
            "admin": {"socket": workdir / "admin.sock"},
            "lifecycle": {"audit_log": self.audit_path},
            "logging": {"format": "json", "requests": "all"},
        }
        for section, values in config.items():
            base.setdefault(section, {}).update(values)
        self.config_path = workdir / "appliance.toml"
        self.config_path.write_text(to_toml(base))
        self.log_path = workdir / "daemon.log"
        self.notify_path = workdir / "notify.sock"
        self.watchdog_usec = watchdog_usec
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.messages: list[dict[str, str]] = []
        self.process: subprocess.Popen[bytes] | None = None
        affine_model(workdir / "repository" / "affine" / "1" / "model.onnx")

    @property
    def address(self) -> str:
        return f"localhost:{self.port}"

    def start(self, timeout: float = 60.0) -> BoxDaemon:
        env = daemon_environment({"NOTIFY_SOCKET": str(self.notify_path)})
        if self.watchdog_usec:
            env["WATCHDOG_USEC"] = str(self.watchdog_usec)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "appliance", "serve", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.wait_for("READY", timeout)
        return self

    def receive(self, timeout: float) -> dict[str, str] | None:
        self.notify.settimeout(timeout)
        try:
            data = self.notify.recv(4096)
        except TimeoutError:
            return None
        message = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.messages.append(message)
        return message

    def wait_for(self, key: str, timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited {self.process.returncode}:\n{self.log_text()}")
            message = self.receive(0.2)
            if message is not None and key in message:
                return message
        raise TimeoutError(f"no {key} from the daemon in {timeout} s:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_text().splitlines() if line.strip()]

    def audit_records(self) -> list[dict[str, Any]]:
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]

    def stop(self) -> int:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        self.notify.close()
        return self.process.returncode if self.process else 0

    def __enter__(self) -> BoxDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def infer_affine(client: triton.InferenceServerClient, rows: np.ndarray | None = None) -> Any:
    """One ModelInfer on the affine model (y = 2x + 1), through tritonclient."""
    x = np.arange(8, dtype=np.float32).reshape(2, 4) if rows is None else rows
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return client.infer("affine", [tensor]).as_numpy("y")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A hospital CA with a server and clients; a foreign CA; an expired client."""
    folder = tmp_path_factory.mktemp("pki")
    hospital = Authority(folder, "hospital-ca")
    foreign = Authority(folder, "foreign-ca")
    return {
        "ca": hospital,
        "foreign": foreign,
        "server": hospital.issue("appliance.example", server=True, file="server"),
        "viewer": hospital.issue("ris-viewer"),
        "operator": hospital.issue("it-operator"),
        "expired": hospital.issue("ris-viewer-old", expired=True),
        "stranger": foreign.issue("ris-viewer"),
    }
