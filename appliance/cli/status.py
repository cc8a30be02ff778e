"""``appliance status``: the daemon's state, execution providers and models at a glance.

Monitoring figures (request rate, latency percentiles, drift) appear when the daemon's
monitoring fills them; ``--json`` gives every field for scripts.
"""

from __future__ import annotations

import argparse
from typing import Any

from appliance.cli._admin import add_admin_arguments, connect, message_dict, print_json


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("status", help="the running daemon's state and models")
    add_admin_arguments(parser)
    parser.set_defaults(func=_status)


def _versions(values: Any) -> str:
    return ",".join(str(v) for v in values) or "-"


def _status(args: argparse.Namespace) -> int:
    with connect(args) as client:
        response = client.status()
    if args.json:
        print_json(message_dict(response))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"daemon [bold]{response.state}[/bold], version {response.server_version}, "
        f"up {response.uptime_s:.0f} s, providers {', '.join(response.execution_providers)}"
    )
    table = Table(
        "model", "active", "state", "on disk", "loaded", "req/s", "p50 ms", "p99 ms", "drift"
    )
    for m in response.models:
        table.add_row(
            m.name,
            str(m.active_version or "-"),
            m.state,
            _versions(m.versions_on_disk),
            _versions(m.versions_loaded),
            f"{m.request_rate:.1f}",
            f"{m.latency_p50_ms:.2f}",
            f"{m.latency_p99_ms:.2f}",
            m.drift_state or "-",
        )
    console.print(table)
    generative = [m for m in response.models if m.generative]
    if generative:
        tokens = Table("generative model", "tokens/s", "TTFT p50 ms", "TTFT p99 ms")
        for m in generative:
            tokens.add_row(
                m.name, f"{m.tokens_per_s:.1f}", f"{m.ttft_p50_ms:.1f}", f"{m.ttft_p99_ms:.1f}"
            )
        console.print(tokens)
    if response.cache_hits or response.cache_misses:
        console.print(f"cache: {response.cache_hits} hits, {response.cache_misses} misses")
    return 0
