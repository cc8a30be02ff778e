"""``appliance config check | reference``: validate a config file, print every key.

``check`` loads a file exactly as ``appliance serve`` would (unknown keys and bad values
name the key) and checks what can be checked without starting: TLS files and who could
authenticate. Run it before ``systemctl restart appliance``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from appliance.config import DEFAULT_CONFIG_PATH


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("config", help="check a config file, list every key")
    sub = parser.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = sub.add_parser(
        "check",
        help="validate a config file as `appliance serve` would",
        description="Exit 0 if FILE would start the daemon, 2 with the offending key if not.",
    )
    check.add_argument("file", nargs="?", type=Path, default=DEFAULT_CONFIG_PATH)
    check.set_defaults(func=_check)
    reference = sub.add_parser(
        "reference", help="print every key with its type, default and meaning (Markdown)"
    )
    reference.set_defaults(func=_reference)


def _check(args: argparse.Namespace) -> int:
    from appliance.config import load_config
    from appliance.security import Authenticator, CertificateFiles, auth_required

    config = load_config(args.file)
    Authenticator(config)
    if config.server.tls is not None:
        CertificateFiles(config.server.tls)
    auth = "on" if auth_required(config) else "off (loopback plaintext)"
    tls = (
        "mTLS"
        if config.server.tls and config.server.tls.client_ca
        else ("TLS" if config.server.tls else "plaintext")
    )
    print(f"{args.file}: ok; inference on {config.server.address} ({tls}), auth {auth}")
    return 0


def _reference(args: argparse.Namespace) -> int:
    from appliance._config_table import markdown

    print(markdown(), end="")
    return 0
