"""What every admin command shares: finding the daemon, ``--json``, printing.

The daemon is found through ``--admin`` (a socket path, or host:port for TCP with mTLS
and the ``--tls-*`` files), else the config file's ``[admin]`` section (``--config``, or
the box's ``/etc/appliance/appliance.toml`` when present), else the default socket.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from appliance.admin import AdminClient


def add_admin_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("reaching the daemon")
    group.add_argument(
        "--admin",
        metavar="ADDRESS",
        help="admin socket path, or HOST:PORT (mTLS); default: [admin] of the config",
    )
    group.add_argument("--config", type=Path, help="config file to read [admin] from")
    group.add_argument("--tls-cert", type=Path, help="client certificate (TCP admin)")
    group.add_argument("--tls-key", type=Path, help="client key (TCP admin)")
    group.add_argument("--tls-ca", type=Path, help="CA of the daemon's certificate (TCP admin)")
    group.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait (default: 600)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def connect(args: argparse.Namespace) -> AdminClient:
    from appliance.admin import AdminClient, AdminTarget
    from appliance.config import DEFAULT_CONFIG_PATH, load_config

    address = args.admin
    if address is None:
        path = args.config
        if path is None and DEFAULT_CONFIG_PATH.is_file():
            path = DEFAULT_CONFIG_PATH
        admin = load_config(path).admin
        address = admin.address or str(admin.socket)
    target = AdminTarget(address, cert=args.tls_cert, key=args.tls_key, ca=args.tls_ca)
    return AdminClient(target, timeout=args.timeout)


def message_dict(message: Message) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def version_text(version: int) -> str:
    """Proto int64 fields carry 0 for "none"."""
    return str(version) if version else "-"
