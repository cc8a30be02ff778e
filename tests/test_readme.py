"""The README as typed: every ``appliance`` command it shows runs through the installed
console script.

Each documented command must reach a real (sub)command of ``appliance`` and every flag
it shows must be one that command takes (``--help`` says so); the cheap ones run for
real, as written, in a scratch folder holding the files they name. So a command or flag
that disappears from the CLI, or one the README invents, fails here.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.cli import build_parser
from appliance.repository import EMBEDDED_ROOT
from tests._daemon import daemon_environment

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: The console script pip installed beside this interpreter.
SCRIPT = Path(sys.executable).parent / "appliance"
#: Commands cheap enough to run as typed here (the others need a daemon, a GPU or minutes).
RUN_AS_TYPED = {
    ("demo",),
    ("keys", "generate"),
    ("package", "build"),
    ("package", "verify"),
    ("package", "inspect"),
    ("auth", "token"),
    ("auth", "hash-token"),
    ("config", "reference"),
}


@dataclass(frozen=True)
class Documented:
    """One ``appliance`` command line of the README."""

    line: str  # as written (line continuations joined)
    words: tuple[str, ...]  # after ``appliance``, optional ``[...]`` parts dropped
    stdin: str | None  # a file the shell feeds it (``< token.txt``)

    @property
    def flags(self) -> list[str]:
        return [w.split("=", 1)[0] for w in self.words if w.startswith("--")]

    @property
    def placeholders(self) -> bool:
        """Words a reader replaces (``FILE``, ``NAME``, ``...``)."""
        return any(w == "..." or re.fullmatch(r"[A-Z][A-Z_.]+", w) for w in self.words)


def _commands_in(text: str) -> list[str]:
    """``appliance ...`` command lines of one shell snippet, comments cut."""
    found = []
    for raw in text.replace("\\\n", " ").splitlines():
        line = re.sub(r"\s+#.*$", "", raw).strip()
        for segment in re.split(r"&&|\|\||;|\|", line):
            if re.match(r"(\S*/)?appliance( |$)", segment.strip()):
                found.append(" ".join(segment.split()))
    return found


def documented_commands() -> list[Documented]:
    """Every command of the README's shell blocks and inline code, in README order."""
    readme = README.read_text(encoding="utf-8")
    lines = []
    for block in re.finditer(r"^```(\w*)\n(.*?)^```$", readme, re.M | re.S):
        if block.group(1) in ("", "sh", "bash", "console"):
            lines += [(block.start(), i, ln) for i, ln in enumerate(_commands_in(block.group(2)))]
    for span in re.finditer(r"`((?:\S*/)?appliance [^`]+)`", readme):
        lines += [(span.start(), 0, ln) for ln in _commands_in(" ".join(span.group(1).split()))]
    seen: dict[str, Documented] = {}
    for _, _, line in sorted(lines):
        if line not in seen:
            seen[line] = _parse(line)
    return list(seen.values())


def _parse(line: str) -> Documented:
    words = shlex.split(line)[1:]
    stdin = None
    if "<" in words:
        stdin = words[words.index("<") + 1]
        words = words[: words.index("<")]
    kept, optional = [], False
    for word in words:
        optional = optional or word.startswith("[")
        if not optional:
            kept.append(word)
        optional = optional and not word.endswith("]")
    return Documented(line, tuple(kept), stdin)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_path(words: tuple[str, ...]) -> tuple[str, ...]:
    """The (sub)command the words reach (a group, such as ``models``, when they stop
    there); a word where a subcommand is due must be one."""
    parser, path = build_parser(), ()
    for word in words:
        choices = _subcommands(parser)
        if not choices:
            break
        assert word in choices, (
            f"`appliance {' '.join((*path, word))}`: no such command; "
            f"`appliance {' '.join(path)}` takes {', '.join(sorted(choices))}"
        )
        parser, path = choices[word], (*path, word)
    return path


def run_script(
    *args: str, cwd: Path, stdin: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=cwd,
        env=daemon_environment(),  # as an operator's shell has it, whatever tests imported
        input=stdin.read_text() if stdin else "",
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


COMMANDS = documented_commands()


def test_the_readme_shows_the_commands_it_is_expected_to() -> None:
    """The parser above finds them: a README edit that hides them fails here, not silently."""
    paths = {command_path(c.words) for c in COMMANDS}
    assert {
        ("serve",),
        ("demo",),
        ("compress",),
        ("models", "push"),
        ("status",),
        ("package", "build"),
        ("config", "check"),
    } <= paths


def _help_problems(path: tuple[str, ...], cwd: Path) -> list[str]:
    result = run_script(*path, "--help", cwd=cwd)
    shown = f"`appliance {' '.join(path)} --help`"
    if result.returncode != 0 or not result.stdout.startswith(f"usage: appliance {' '.join(path)}"):
        return [f"{shown} exited {result.returncode}: {result.stderr or result.stdout}"]
    return [
        f"the README shows `{command.line}`, but {shown} lists no {flag}"
        for command in COMMANDS
        if command_path(command.words) == path
        for flag in command.flags
        if not re.search(rf"(^|[\s\[,]){re.escape(flag)}\b", result.stdout)
    ]


def test_every_documented_command_and_flag_exists(tmp_path: Path) -> None:
    paths = sorted({command_path(c.words) for c in COMMANDS})
    with ThreadPoolExecutor(max_workers=4) as pool:  # each run is mostly interpreter start
        problems = [
            p for found in pool.map(lambda p: _help_problems(p, tmp_path), paths) for p in found
        ]
    assert problems == []


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the files the cheap commands name: an ONNX model and a token."""
    folder = tmp_path_factory.mktemp("readme")
    shutil.copy(EMBEDDED_ROOT / "breast_cancer" / "1" / "model.onnx", folder / "model.onnx")
    (folder / "token.txt").write_text("a-token-someone-already-has\n")
    return folder


def test_the_cheap_commands_run_as_typed(scratch: Path) -> None:
    """Each at its first showing, in README order (later ones repeat it or mention it in
    prose; ``keys generate`` would rightly refuse to overwrite the key it made)."""
    ran: list[tuple[str, ...]] = []
    for command in COMMANDS:
        path = command_path(command.words)
        if path not in RUN_AS_TYPED or path in ran or command.placeholders:
            continue
        stdin = scratch / command.stdin if command.stdin else None
        result = run_script(*command.words, cwd=scratch, stdin=stdin)
        assert result.returncode == 0, f"`{command.line}` failed: {result.stderr}"
        ran.append(path)
    assert set(ran) == RUN_AS_TYPED, "a command the README runs for real is gone from it"
    assert (scratch / "keys" / "private.pem").stat().st_mode & 0o777 == 0o600
    assert (scratch / "dist" / "sepsis-risk-3.apkg").is_file()
