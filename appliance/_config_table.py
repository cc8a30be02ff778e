"""The configuration reference, generated from the ``Config`` model itself.

Walks the pydantic schema and yields one row per dotted key (``server.tls.client_ca``,
``auth.tokens[].roles``, ``models.NAME.max_batch_size``) with its type, default and
meaning (the field's docstring). ``appliance config reference`` prints the
README's table, and a test checks that the README lists exactly these keys.

Sections that always exist (``[server]``, ``[auth]``) are containers, not rows; an
optional section (``[server.tls]``), an array of tables (``[[auth.tokens]]``) and the
``[models.NAME]`` tables are rows of their own, followed by their keys.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from appliance.config import Config


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    meaning: str


def _section(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return annotation, False


def _type_name(annotation: Any) -> str:
    annotation = _unwrap_optional(annotation)[0]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        name = " \\| ".join(json.dumps(a) for a in args)
    elif origin in (typing.Union, types.UnionType):
        name = " \\| ".join(_type_name(a) for a in args)
    elif origin is list:
        name = f"list of {_type_name(args[0])}"
    elif origin is dict or _section(annotation) is not None:
        name = "table"
    else:
        name = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}.get(
            annotation, getattr(annotation, "__name__", str(annotation))
        )
    return name


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, dict) and not value:
        return "none"
    if isinstance(value, list) and not value:
        return "`[]`"
    return f"`{json.dumps(value, default=str)}`"


def rows(model: type[BaseModel] = Config, prefix: str = "") -> Iterator[Row]:
    """Every key of ``model``, depth first, in declaration order."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        inner, optional = _unwrap_optional(field.annotation)
        origin, args = typing.get_origin(inner), typing.get_args(inner)
        section = _section(inner)
        if section is not None and not optional:
            yield from rows(section, f"{key}.")  # a section that always exists
            continue
        yield Row(key, _type_name(field.annotation), _default(field), field.description or "")
        if section is not None:
            yield from rows(section, f"{key}.")
        elif origin is list and _section(args[0]) is not None:
            yield from rows(args[0], f"{key}[].")
        elif origin is dict and _section(args[1]) is not None:
            yield from rows(args[1], f"{key}.NAME.")


def markdown() -> str:
    lines = ["| Key | Type | Default | Meaning |", "| --- | --- | --- | --- |"]
    for row in rows():
        meaning = row.meaning.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{row.key}` | {row.type} | {row.default} | {meaning} |")
    return "\n".join(lines) + "\n"


__all__ = ["Row", "markdown", "rows"]
