"""The toolchain's error tree: every failure a user of ``appliance compress`` can meet.

Each error says what was expected and what arrived; ``exit_code`` is what the
``appliance compress`` command returns for it (same scheme as ``appliance``'s codes).

    CompressError                 1  internal (a bug)
    ├── RecipeError               2  missing key, wrong type or value in the recipe
    ├── DataError                 2  unreadable or mismatched data (columns, shapes, dtypes)
    ├── SourceModelError          2  the source model cannot be loaded
    ├── ExportError               2  an op or module the ONNX exporter cannot handle
    ├── QuantizeError             1  ONNX Runtime's quantizer failed
    └── BudgetError               3  no variant meets the accuracy budget (nothing packaged)
"""

from __future__ import annotations


class CompressError(Exception):
    """Root of every error the toolchain raises on purpose."""

    exit_code: int = 1


class RecipeError(CompressError):
    exit_code = 2


class DataError(CompressError):
    exit_code = 2


class SourceModelError(CompressError):
    exit_code = 2


class ExportError(CompressError):
    exit_code = 2


class QuantizeError(CompressError):
    exit_code = 1


class BudgetError(CompressError):
    exit_code = 3


__all__ = [
    "BudgetError",
    "CompressError",
    "DataError",
    "ExportError",
    "QuantizeError",
    "RecipeError",
    "SourceModelError",
]
