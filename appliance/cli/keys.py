"""``appliance keys generate --out DIR``: an EC P-256 key pair for signing packages."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("keys", help="manage package signing keys")
    sub = parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    gen = sub.add_parser(
        "generate",
        help="write DIR/private.pem (mode 0600) and DIR/public.pem",
        description="Generate an EC P-256 key pair; list public.pem under [signing] "
        "trusted_keys on each box, keep private.pem on the build machine.",
    )
    gen.add_argument("--out", required=True, type=Path, metavar="DIR")
    gen.set_defaults(func=_generate)


def _generate(args: argparse.Namespace) -> int:
    from appliance.package.keys import generate_keypair

    private, public = generate_keypair(args.out)
    print(f"private key: {private} (keep secret; mode 0600)")
    print(f"public key:  {public} (list under [signing] trusted_keys on each box)")
    return 0
