"""Signing key pairs for model packages: EC P-256, PEM, private key readable by owner only.

The OpenSSF ``model-signing`` key mode takes elliptic-curve keys (P-256/384/521), not
Ed25519, so that is what we make. Signing and verifying live in ``signing``.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.errors import PackageError

PRIVATE_KEY_NAME = "private.pem"
PUBLIC_KEY_NAME = "public.pem"


def generate_keypair(out_dir: Path) -> tuple[Path, Path]:
    """Write ``out_dir/private.pem`` (mode 0600) and ``out_dir/public.pem``; return both.

    Refuses to overwrite an existing private key: losing a release key is worse than
    a second command.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path = out_dir / PRIVATE_KEY_NAME
    public_path = out_dir / PUBLIC_KEY_NAME
    if private_path.exists():
        raise PackageError(f"{private_path} already exists; expected a fresh folder")
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # Created 0600 from the start, so the key is never readable by others, not even briefly.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_pem)
    public_path.write_bytes(public_pem)
    return private_path, public_path


__all__ = ["PRIVATE_KEY_NAME", "PUBLIC_KEY_NAME", "generate_keypair"]
