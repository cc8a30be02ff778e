"""``appliance models list | push | activate | rollback | remove | evaluate | shadow``: the
admin CLI.

Each command is one call to the daemon's admin service (``appliance.admin.AdminClient``):
readable tables by default, ``--json`` for scripts, and the exit codes of
``appliance.errors.EXIT_CODES`` (3: refused, 4: not found, 5: daemon unreachable, ...).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from appliance.cli._admin import (
    add_admin_arguments,
    connect,
    message_dict,
    print_json,
    version_text,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "models",
        help="push, activate, roll back and remove model versions on a running daemon",
    )
    sub = parser.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    listing = sub.add_parser("list", help="models and versions: on disk, loaded, active")
    listing.add_argument("name", nargs="?", default="", help="one model only")
    add_admin_arguments(listing)
    listing.set_defaults(func=_list)

    push = sub.add_parser("push", help="upload a signed package; verify, self-test, install")
    push.add_argument("package", type=Path, metavar="PKG", help="NAME-VERSION.apkg")
    push.add_argument("--activate", action="store_true", help="serve it once installed")
    push.add_argument(
        "--allow-downgrade",
        action="store_true",
        help="accept a version below the highest ever activated (audited)",
    )
    add_admin_arguments(push)
    push.set_defaults(func=_push)

    activate = sub.add_parser("activate", help="serve an installed version (self-tested first)")
    activate.add_argument("name")
    activate.add_argument("version", type=int)
    activate.add_argument(
        "--allow-downgrade",
        action="store_true",
        help="accept a version below the highest ever activated (audited)",
    )
    add_admin_arguments(activate)
    activate.set_defaults(func=_activate)

    rollback = sub.add_parser("rollback", help="serve the previously active version again")
    rollback.add_argument("name")
    add_admin_arguments(rollback)
    rollback.set_defaults(func=_rollback)

    remove = sub.add_parser("remove", help="delete an installed version that is not active")
    remove.add_argument("name")
    remove.add_argument("version", type=int)
    add_admin_arguments(remove)
    remove.set_defaults(func=_remove)

    evaluate = sub.add_parser(
        "evaluate", help="score a version against the serving one on the site's eval_data"
    )
    evaluate.add_argument("name")
    evaluate.add_argument(
        "version", type=int, nargs="?", default=0, help="default: the serving version"
    )
    add_admin_arguments(evaluate)
    evaluate.set_defaults(func=_evaluate)

    shadow = sub.add_parser(
        "shadow",
        help="copy a share of live requests to a candidate version and compare (or --stop)",
        description="Clients keep getting the serving version's answers; the agreement "
        "shows in `appliance status` and /metrics. Ends with --stop or a restart.",
    )
    shadow.add_argument("name")
    shadow.add_argument("version", type=int, nargs="?", help="the candidate (not with --stop)")
    shadow.add_argument(
        "--sample",
        type=float,
        default=1.0,
        metavar="F",
        help="share of requests copied, in (0, 1] (default: 1, every request)",
    )
    shadow.add_argument("--stop", action="store_true", help="end the model's shadow")
    add_admin_arguments(shadow)
    shadow.set_defaults(func=_shadow)


def _list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        response = client.list(args.name)
    if args.json:
        print_json(message_dict(response)["models"])
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("model", "version", "state", "on disk", "digest", "installed")
    for model in response.models:
        for v in model.versions:
            state = "active" if v.active else ("loaded" if v.loaded else "")
            table.add_row(
                model.name,
                str(v.version),
                state,
                "yes" if v.on_disk else "no",
                v.digest.removeprefix("sha256:")[:12],
                v.installed_at[:19],
            )
    Console().print(table)
    return 0


def _push(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    package: Path = args.package
    if not package.is_file():
        from appliance.errors import ModelNotFoundError

        raise ModelNotFoundError(f"expected a package file at {package}, found none")
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    with connect(args) as client, Progress(*columns, disable=args.json, transient=True) as bar:
        task = bar.add_task(f"uploading {package.name}", total=package.stat().st_size)
        response = client.push(
            package,
            activate=args.activate,
            allow_downgrade=args.allow_downgrade,
            on_progress=lambda n: bar.advance(task, n),
        )
    if args.json:
        print_json(message_dict(response))
        return 0
    where = (
        f"active (was {version_text(response.previous_version)})"
        if response.activated
        else "installed, not active"
    )
    print(
        f"{response.name} version {response.version}: verified, self-tested, {where} "
        f"in {response.seconds:.1f} s ({response.digest})"
    )
    return 0


def _activate(args: argparse.Namespace) -> int:
    with connect(args) as client:
        response = client.activate(args.name, args.version, args.allow_downgrade)
    return _switched(args, response, "active")


def _rollback(args: argparse.Namespace) -> int:
    with connect(args) as client:
        response = client.rollback(args.name)
    return _switched(args, response, "rolled back")


def _switched(args: argparse.Namespace, response: Any, verb: str) -> int:
    if args.json:
        print_json(message_dict(response))
        return 0
    print(
        f"{response.name} version {response.version}: {verb} (was "
        f"{version_text(response.previous_version)}) in {response.seconds:.1f} s"
    )
    return 0


def _remove(args: argparse.Namespace) -> int:
    with connect(args) as client:
        response = client.remove(args.name, args.version)
    if args.json:
        print_json(message_dict(response))
        return 0
    print(f"{response.name} version {response.version}: removed")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    with connect(args) as client:
        response = client.evaluate(args.name, args.version)
    if args.json:
        print_json(message_dict(response))
        return 0
    print(f"{response.summary} ({response.metric})")
    print(response.table)
    return 0


def _shadow(args: argparse.Namespace) -> int:
    from appliance.errors import InvalidInputError

    if args.stop == (args.version is not None):
        raise InvalidInputError(
            "appliance models shadow: expected NAME VERSION to start a shadow, or NAME --stop"
        )
    with connect(args) as client:
        if args.stop:
            response = client.shadow(args.name, stop=True)
        else:
            response = client.shadow(args.name, args.version, args.sample)
    if args.json:
        print_json(message_dict(response.shadow))
        return 0
    s = response.shadow
    if args.stop:
        print(f"{s.name} version {s.version}: shadow stopped; {shadow_summary(s)}")
    else:
        print(
            f"{s.name} version {s.version}: shadowing {s.sample:.0%} of the requests to "
            f"version {version_text(s.serving_version)}"
        )
    return 0


def shadow_summary(s: Any) -> str:
    """Agreement and counts of one ``ShadowState``, in words."""
    agreement = f"agreement {s.agreement:.1%} of {s.rows} rows" if s.rows else "no row compared"
    return f"{agreement}, {s.requests} copied, {s.failures} failed, {s.skipped} skipped"
