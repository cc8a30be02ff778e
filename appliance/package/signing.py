"""Sign and verify an unpacked package folder in the OpenSSF model-signing format.

The signature (``model.sig``, a Sigstore bundle signed with an EC key, fully offline)
covers every file in the folder except itself, so ``model_signing verify key FOLDER
--signature FOLDER/model.sig --public_key KEY.pem`` accepts our packages too. Files that
are not in the signature make verification fail: nothing rides along unsigned.

This module is the boundary where model-signing's exceptions become ``SignatureError``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

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
        raise SignatureError(f"{folder.name}: unsigned, expected {SIGNATURE_NAME}, found none")
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
                raise SignatureError(f"{folder.name}: tampered: {_short(message)}") from exc
            untrusted.append(f"{Path(key).name}: {message}")
        except Exception as exc:  # model-signing raises bare library errors on bad bundles
            untrusted.append(f"{Path(key).name}: {type(exc).__name__}: {exc}")
        else:
            log.debug("%s verified with %s", folder, key)
            return Path(key)
    raise SignatureError(
        f"{folder.name}: signature not made by a trusted key "
        f"(tried {len(untrusted)}: {'; '.join(untrusted)})"
    )


def _short(message: str) -> str:
    # model-signing's diff lists full digests; keep the file names and drop the hex.
    body = message.removeprefix("Signature mismatch: ")
    body = re.sub(r": Expected '[0-9a-f]+', Actual '[0-9a-f]+'", "", body)
    return body.strip("[]").replace('"', "").replace("\\'", "'")[:500]


__all__ = ["sign_folder", "verify_folder"]
