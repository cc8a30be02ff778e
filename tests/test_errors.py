"""One error convention across the three packages: every error root is a ``StatusError``,
each class carries a status, and its exit code comes from the one table, which the
README documents."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest

import appliance.errors
import compress.errors
import federated.errors
from appliance.errors import EXIT_CODES, Status, StatusError

ROOT = Path(__file__).resolve().parents[1]
ROOTS = {
    appliance.errors: appliance.errors.ApplianceError,
    compress.errors: compress.errors.CompressError,
    federated.errors: federated.errors.FederatedError,
}


def error_classes(module: ModuleType) -> list[type[StatusError]]:
    return [
        cls
        for name in module.__all__
        if isinstance(cls := getattr(module, name), type) and issubclass(cls, Exception)
    ]


@pytest.mark.parametrize("module", list(ROOTS), ids=lambda m: m.__name__)
def test_every_error_has_a_status_and_the_exit_code_of_the_one_table(module: ModuleType) -> None:
    classes = error_classes(module)
    assert ROOTS[module] in classes
    for cls in classes:
        assert issubclass(cls, ROOTS[module]) or cls is StatusError, cls
        assert isinstance(cls.status, Status), cls
        assert cls("x").exit_code == EXIT_CODES[cls.status], cls


def test_every_status_has_an_exit_code() -> None:
    assert set(EXIT_CODES) == set(Status)
    assert all(status.exit_code == code for status, code in EXIT_CODES.items())


def test_compress_keeps_its_documented_exit_codes() -> None:
    codes = {cls.__name__: cls("x").exit_code for cls in error_classes(compress.errors)}
    assert codes == {
        "CompressError": 1,
        "RecipeError": 2,
        "DataError": 2,
        "SourceModelError": 2,
        "ExportError": 2,
        "QuantizeError": 1,
        "BudgetError": 3,
    }


@pytest.mark.parametrize("module", [compress.errors, federated.errors], ids=lambda m: m.__name__)
def test_the_drawn_error_tree_names_every_class_with_its_status(module: ModuleType) -> None:
    doc = module.__doc__ or ""
    drawn = dict(re.findall(r"^[\s│├└─]*(\w+Error)\s+([A-Z_]+)\b", doc, re.MULTILINE))
    assert drawn == {cls.__name__: cls.status.value for cls in error_classes(module)}


def test_the_readme_lists_the_exit_codes_of_the_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("Exit codes of every `appliance` command:", 1)[1]
    table = re.findall(r"^\| (\d+) \|", section.split("\n\n", 2)[1], re.MULTILINE)
    assert [int(code) for code in table] == sorted({0, *EXIT_CODES.values()})
