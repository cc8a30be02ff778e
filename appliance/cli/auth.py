"""``appliance auth token | hash-token``: bearer tokens for ``[[auth.tokens]]``.

A box stores only a token's SHA-256, so the config file can be read, copied and kept in
version control without leaking a credential. ``token`` makes a new random token and
prints the TOML to paste; ``hash-token`` hashes a token someone already has, read from
stdin so it never shows in ``ps`` or the shell history.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("auth", help="make bearer tokens for [[auth.tokens]]")
    sub = parser.add_subparsers(dest="auth_command", required=True, metavar="ACTION")
    token = sub.add_parser(
        "token",
        help="generate a token and the [[auth.tokens]] entry for it",
        description="Print a new random bearer token (give it to the client) and the "
        "[[auth.tokens]] table holding its SHA-256 (paste it into appliance.toml).",
    )
    token.add_argument("--name", required=True, help="who holds the token (logged as caller)")
    token.add_argument(
        "--role",
        action="append",
        choices=("infer", "admin"),
        required=True,
        help="a role the token grants; repeat for both",
    )
    token.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    token.set_defaults(func=_token)
    hashed = sub.add_parser(
        "hash-token",
        help="print the SHA-256 of a token read from stdin",
        description="Read one token from stdin and print the hex SHA-256 that "
        "[[auth.tokens]] sha256 expects.",
    )
    hashed.set_defaults(func=_hash_token)


def _toml_entry(name: str, sha256: str, roles: list[str]) -> str:
    return (
        f"[[auth.tokens]]\nname = {json.dumps(name)}\nsha256 = {json.dumps(sha256)}\n"
        f"roles = {json.dumps(sorted(set(roles)))}\n"
    )


def _token(args: argparse.Namespace) -> int:
    from appliance.security import hash_token, new_token

    token = new_token()
    digest = hash_token(token)
    if args.json:
        entry = {"name": args.name, "token": token, "sha256": digest, "roles": args.role}
        print(json.dumps(entry))
        return 0
    print(f"token (give to the client; it is not stored anywhere): {token}\n")
    print("add to appliance.toml:\n")
    print(_toml_entry(args.name, digest, args.role), end="")
    return 0


def _hash_token(args: argparse.Namespace) -> int:
    from appliance.errors import ConfigError
    from appliance.security import hash_token

    token = sys.stdin.readline().strip()
    if not token:
        raise ConfigError("expected a token on stdin, got an empty line")
    print(hash_token(token))
    return 0
