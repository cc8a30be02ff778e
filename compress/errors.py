"""The toolchain's error tree: every failure a user of ``appliance compress`` can meet.

Each error says what was expected and what arrived. Every class carries a status, and
the ``appliance compress`` command exits with that status's code from the project's one
table (``appliance.errors.EXIT_CODES``, the same codes every ``appliance`` command uses):

    CompressError           INTERNAL             1  internal (a bug)
    ├── RecipeError         INVALID_ARGUMENT     2  missing key, wrong type or value
    ├── DataError           INVALID_ARGUMENT     2  unreadable or mismatched data (columns, shapes)
    ├── SourceModelError    INVALID_ARGUMENT     2  the source model cannot be loaded
    ├── ExportError         INVALID_ARGUMENT     2  an op or module the ONNX exporter cannot handle
    ├── QuantizeError       INTERNAL             1  ONNX Runtime's quantizer failed
    └── BudgetError         FAILED_PRECONDITION  3  no variant meets the budget (nothing packaged)
"""

from __future__ import annotations

from appliance.errors import Status, StatusError


class CompressError(StatusError):
    """Root of every error the toolchain raises on purpose."""


class RecipeError(CompressError):
    status = Status.INVALID_ARGUMENT


class DataError(CompressError):
    status = Status.INVALID_ARGUMENT


class SourceModelError(CompressError):
    status = Status.INVALID_ARGUMENT


class ExportError(CompressError):
    status = Status.INVALID_ARGUMENT


class QuantizeError(CompressError):
    status = Status.INTERNAL


class BudgetError(CompressError):
    status = Status.FAILED_PRECONDITION


__all__ = [
    "BudgetError",
    "CompressError",
    "DataError",
    "ExportError",
    "QuantizeError",
    "RecipeError",
    "SourceModelError",
]
