"""The README's configuration table lists exactly the keys of the config model."""

from __future__ import annotations

import re
from pathlib import Path

from appliance._config_table import markdown, rows

ROOT = Path(__file__).resolve().parents[2]


def documented_section() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^## Configuration\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    assert match is not None, "README.md has no '## Configuration' section"
    return match.group(1)


def documented_keys(section: str) -> list[str]:
    return re.findall(r"^\| `([^`]+)` \|", section, re.M)


def test_every_config_key_is_documented_and_every_documented_key_exists() -> None:
    model_keys = [row.key for row in rows()]
    documented = documented_keys(documented_section())
    assert sorted(set(model_keys) - set(documented)) == [], "keys missing from the README"
    assert sorted(set(documented) - set(model_keys)) == [], "README keys the config lacks"


def test_every_key_has_a_meaning() -> None:
    assert [row.key for row in rows() if not row.meaning.strip()] == []


def test_the_documented_table_is_the_generated_one() -> None:
    """Defaults and meanings too: regenerate with `appliance config reference`."""
    table = "\n".join(line for line in documented_section().splitlines() if line.startswith("|"))
    assert table.strip() == markdown().strip()
