"""The ``appliance`` console script: one entry point, a module per command group.

Each module in ``_COMMANDS`` exposes ``register(subparsers)``, which adds its parser and
sets ``func``; heavy imports (onnxruntime, torch, grpc) happen inside the command, so
``appliance --help`` stays fast. This is the CLI's error boundary: an error of ours
(``ApplianceError``, or ``CompressError`` from ``appliance compress``) becomes one line
on stderr and the exit code of its status (``appliance.errors.EXIT_CODES``), which
scripts can rely on.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from appliance.errors import StatusError

# Command modules, in the order `appliance --help` lists them.
_COMMANDS = (
    "serve",
    "demo",
    "models",
    "status",
    "keys",
    "package",
    "compress",
    "auth",
    "config",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appliance",
        description="Serve, update and build compressed ONNX models on an on-prem box.",
    )
    parser.add_argument(
        "--log-level", help="DEBUG, INFO, WARNING or ERROR (default: INFO, or logging.level)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMANDS:
        module = importlib.import_module(f"appliance.cli.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=(args.log_level or "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.func(args)
    except StatusError as exc:
        print(f"appliance {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code


__all__ = ["build_parser", "main"]
