"""``appliance compress RECIPE.yaml --out DIR``: the compression toolchain's command.

The toolchain (``compress``, the ``[compress]`` extra) is imported only when the command
runs, so the serving box's lean install never loads torch. A ``CompressError`` ends the
command at the CLI's one error boundary (``appliance.cli``) with its status's exit code
(3 when no variant meets the budget: the report is written, no package is).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compress",
        help="distill, prune and quantize a model into a signed package",
        description="Run a compression recipe: variants, report.md/html and the signed "
        ".apkg of the fastest variant within the accuracy budget, all in --out.",
    )
    parser.add_argument("recipe", type=Path, metavar="RECIPE.yaml")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    parser.add_argument("--key", type=Path, help="PEM EC private key (overrides package.key)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_compress)


def _compress(args: argparse.Namespace) -> int:
    try:
        from compress.pipeline import run
        from compress.recipe import load_recipe
    except ImportError as exc:
        print(
            f"appliance compress: the toolchain is not installed ({exc}); "
            "install the [compress] extra",
            file=sys.stderr,
        )
        return 2
    result = run(
        load_recipe(args.recipe),
        args.out,
        key=args.key,
        show_progress=not args.quiet and sys.stderr.isatty(),
    )
    selected = result.search.selected
    print(f"report: {result.report}")
    if selected is not None:
        print(f"selected: {selected.name}")
    if result.package is not None:
        print(f"package: {result.package}")
    return 0
