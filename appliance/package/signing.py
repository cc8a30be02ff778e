"""Sign and verify an unpacked package folder in the OpenSSF model-signing format.

The signature (``model.sig``, a Sigstore bundle signed with an EC key, fully offline)
covers every file in the folder except itself, so ``model_signing verify key FOLDER
--signature FOLDER/model.sig --public_key KEY.pem`` accepts our packages too. Files that
are not in the signature make verification fail: nothing rides along unsigned.

This module is the boundary where model-signing's exceptions become ``SignatureError``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model_signing import hashing, signing, verifying

from appliance.errors import PackageError, SignatureError
from appliance.package.manifest import SIGNATURE_NAME

log = logging.getLogger(__name__)


def _hashing_config() -> hashing.Config:
    # Git paths are not ignored: a stray .git folder inside a package is an unsigned
    # file like any other and must fail verification.
    config = hashing.Config()  # type: ignore[no-untyped-call]
    return config.set_ignored_paths(paths=[SIGNATURE_NAME], ignore_git_paths=False)


def sign_folder(folder: Path, private_key: Path) -> Path:
    """Sign every file in ``folder`` with the EC ``private_key``; return the signature path."""
    folder = Path(folder)
    signature = folder / SIGNATURE_NAME
    if not Path(private_key).is_file():
        raise PackageError(f"expected a PEM private key at {private_key}, found no file")
    try:
        config = signing.Config()  # type: ignore[no-untyped-call]
        config.use_elliptic_key_signer(private_key=Path(private_key))
        config.set_hashing_config(_hashing_config()).sign(folder, signature)
    except (ValueError, TypeError, OSError) as exc:
        raise PackageError(f"could not sign {folder} with {private_key}: {exc}") from exc
    return signature


def verify_folder(folder: Path, trusted_public_keys: Sequence[Path]) -> Path:
    """Check ``folder`` against its signature with each trusted key; return the key that matched.

    Raises ``SignatureError`` saying why: unsigned, tampered (naming the files when
    model-signing does) or signed by a key that is not trusted.
    """
    folder = Path(folder)
    signature = folder / SIGNATURE_NAME
    if not signature.is_file():
        raise SignatureError(f"unsigned: expected {SIGNATURE_NAME}, found none")
    if not trusted_public_keys:
        raise SignatureError("no trusted public keys configured; refusing every package")
    untrusted: list[str] = []
    for key in trusted_public_keys:
        try:
            config = verifying.Config()  # type: ignore[no-untyped-call]
            config.use_elliptic_key_verifier(public_key=Path(key))
            config.set_hashing_config(_hashing_config()).verify(folder, signature)
        except ValueError as exc:
            message = str(exc)
            if message.startswith("Signature mismatch"):
                # The key matched (the envelope verified) but the content differs.
                raise SignatureError(f"tampered: {describe_mismatch(folder, signature)}") from exc
            untrusted.append(f"{Path(key).name}: {message}")
        except Exception as exc:  # model-signing raises bare library errors on bad bundles
            untrusted.append(f"{Path(key).name}: {type(exc).__name__}: {exc}")
        else:
            log.debug("%s verified with %s", folder, key)
            return Path(key)
    raise SignatureError(
        f"signature not made by a trusted key (tried {len(untrusted)}: {'; '.join(untrusted)})"
    )


#: Hex digits of a digest shown in messages: enough to tell two files apart.
DIGEST_CHARS = 12


def describe_mismatch(folder: Path, signature: Path) -> str:
    """Which files differ from what the signature lists, digests in short hex.

    Read from the signature's own statement (its envelope was just verified with a
    trusted key, so the list is authentic) rather than from model-signing's message,
    which prints raw digest bytes.
    """
    try:
        signed = _signed_digests(signature)
    except (OSError, ValueError, KeyError, TypeError):
        return "the files differ from those the signature covers"
    on_disk = {
        p.relative_to(folder).as_posix(): p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p != signature
    }
    problems = []
    for name, path in on_disk.items():
        if name not in signed:
            problems.append(f"{name}: not covered by the signature")
            continue
        algorithm, expected = signed[name]
        got = _file_digest(path, algorithm)
        if got != expected:
            problems.append(
                f"{name}: expected {algorithm} {expected[:DIGEST_CHARS]}..., "
                f"got {got[:DIGEST_CHARS]}..."
            )
    problems += [f"{name}: signed but missing" for name in signed if name not in on_disk]
    return "; ".join(problems)[:1000] or "the files differ from those the signature covers"


def _signed_digests(signature: Path) -> dict[str, tuple[str, str]]:
    bundle: dict[str, Any] = json.loads(signature.read_bytes())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    return {
        str(r["name"]): (str(r["algorithm"]), str(r["digest"]).lower())
        for r in statement["predicate"]["resources"]
    }


def _file_digest(path: Path, algorithm: str) -> str:
    try:
        digest = hashlib.new(algorithm)
    except ValueError:
        return "?"
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["describe_mismatch", "sign_folder", "verify_folder"]
