"""``appliance serve``: run the daemon in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

from appliance.config import DEFAULT_CONFIG_PATH, Config, load_config


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="run the inference daemon in the foreground",
        description="Serve the models of the repository over KServe V2 gRPC and HTTP (V2 "
        "REST, OpenAI-compatible /v1). With no arguments: the embedded default model on "
        "127.0.0.1:8001 (gRPC) and 127.0.0.1:8000 (HTTP).",
    )
    parser.add_argument(
        "--config", type=Path, help=f"TOML config (default: {DEFAULT_CONFIG_PATH} if present)"
    )
    parser.add_argument("--repository", type=Path, help="model repository folder")
    parser.add_argument("--address", help="HOST:PORT for inference gRPC")
    parser.add_argument(
        "--http-address", help="HOST:PORT for HTTP (KServe V2 REST, OpenAI-compatible /v1)"
    )
    parser.set_defaults(func=run)


def resolve_config(args: argparse.Namespace) -> Config:
    """The config file (given, or the box default if present) with flags on top."""
    path = args.config
    if path is None and DEFAULT_CONFIG_PATH.is_file():
        path = DEFAULT_CONFIG_PATH
    config = load_config(path)
    if args.repository is not None:
        config = config.model_copy(
            update={"repository": config.repository.model_copy(update={"path": args.repository})}
        )
    for key in ("address", "http_address"):
        value = getattr(args, key, None)
        if value is not None:
            checked = _validated_address(value, key)
            server = config.server.model_copy(update={key: checked})
            config = config.model_copy(update={"server": server})
    return config


def _validated_address(address: str, key: str = "address") -> str:
    from pydantic import ValidationError

    from appliance.config import ServerConfig, describe_validation_error
    from appliance.errors import ConfigError

    try:
        return str(getattr(ServerConfig.model_validate({key: address}), key))
    except ValidationError as exc:
        flag = "--" + key.replace("_", "-")
        raise ConfigError(f"{flag}: {describe_validation_error(exc)}") from exc


def run(args: argparse.Namespace) -> int:
    from appliance.logs import configure_logging

    config = resolve_config(args)
    configure_logging(config.logging, level=getattr(args, "log_level", None), capture_native=True)
    return asyncio.run(serve(config))


async def serve(config: Config) -> int:
    from appliance.server import Daemon

    daemon = Daemon(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    await daemon.start()
    await daemon.run_until_stopped()
    return 0
