"""``appliance compress RECIPE.yaml --out DIR``: the compression toolchain's command.

``appliance compress --cascade SMALL.onnx LARGE.onnx --eval-data FILE`` calibrates a
cascade's ``min_confidence`` on labelled data instead (``compress.cascade``): the
threshold curve, and the lowest threshold within ``--max-drop`` of the large model.

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
    parser.add_argument("recipe", type=Path, metavar="RECIPE.yaml", nargs="?")
    parser.add_argument("--out", type=Path, metavar="DIR", help="required with a recipe")
    parser.add_argument("--key", type=Path, help="PEM EC private key (overrides package.key)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    cascade = parser.add_argument_group("calibrate a cascade instead ([cascades.NAME])")
    cascade.add_argument(
        "--cascade", nargs=2, type=Path, metavar=("SMALL.onnx", "LARGE.onnx"), help="the stages"
    )
    cascade.add_argument(
        "--eval-data", type=Path, metavar="FILE", help="labelled CSV/Parquet: features, label"
    )
    cascade.add_argument("--label", default="label", help="label column (default: label)")
    cascade.add_argument(
        "--max-drop",
        type=float,
        default=0.01,
        help="accuracy the cascade may lose against the large model (default: 0.01)",
    )
    parser.set_defaults(func=_compress)


def _compress(args: argparse.Namespace) -> int:
    if args.cascade is not None:
        return _cascade(args)
    if args.recipe is None or args.out is None:
        print("appliance compress: expected RECIPE.yaml --out DIR, or --cascade", file=sys.stderr)
        return 2
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


def _cascade(args: argparse.Namespace) -> int:
    if args.eval_data is None:
        print("appliance compress --cascade: expected --eval-data FILE", file=sys.stderr)
        return 2
    from compress.cascade import calibrate_models

    small, large = args.cascade
    calibration = calibrate_models(
        small, large, args.eval_data, label=args.label, max_drop=args.max_drop
    )
    print(calibration.markdown())
    chosen = calibration.chosen
    if chosen is None:
        print("no threshold keeps the budget: serve the large model alone")
        return 3
    print(
        f"\nmin_confidence = {chosen.threshold:.6g}   # {chosen.small_share:.1%} of the rows "
        f"answered by {small.name}, accuracy {chosen.accuracy:.4f}"
    )
    return 0
