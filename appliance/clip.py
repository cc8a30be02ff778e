"""Client-supplied text and lists, cut before they reach a log, a reply or a metric label.

A client controls every string of its request (model name, version, id, input names,
datatypes) and every list (shapes, inputs): up to the message size limit each. Written
back whole, one 2 MiB model name logged three times per request turns five requests
into 30 MB of journal. So whatever repeats a client's string or list goes through here
first: ``clip`` keeps the first ``limit`` characters and says how long the rest was;
``clip_list`` keeps the first items and counts the others. What the client wrote stays
recognisable, and the cost of a line no longer depends on what the client sent.

Text that may carry tensor values is the other kind to cut: an ONNX Runtime kernel's
status message (``idx=31337 must be within ...``: a patient's token id) or numpy's
overflow text. ``strip_values`` keeps what names the fault (the node, its operator, the
kind of error) and drops the rest: the status message after ``Status Message:`` and
every number outside a quoted name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

#: Characters kept of one client string: longer than any model or tensor name in use.
TEXT_LIMIT = 64
#: Items kept of one client list (a shape, the inputs of a request).
LIST_LIMIT = 8


def clip(text: str, limit: int = TEXT_LIMIT) -> str:
    """``text`` if short, else its head and how many characters were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text)} characters)"


def quoted(text: str, limit: int = TEXT_LIMIT) -> str:
    """``repr`` of a clipped string, as messages quote names (``model 'x'``)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}...({len(text)} characters)"


def clip_list(items: Sequence[Any], limit: int = LIST_LIMIT) -> list[Any]:
    """The first ``limit`` items, then a marker counting the others."""
    if len(items) <= limit:
        return list(items)
    return [*items[:limit], f"...({len(items) - limit} more)"]


# ONNX Runtime's exception prefix: "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : ".
_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : (\w+) : ")
_QUOTED = re.compile(r"('[^']*')")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_WITHHELD = "(withheld: it may carry input values)"


def strip_values(text: str, limit: int = 300) -> str:
    """Native error text with anything that may be a tensor value taken out."""
    text = _ORT_PREFIX.sub(r"\1: ", text.strip())
    head, found, _ = text.partition("Status Message:")
    if found:
        text = f"{head}Status Message: {_WITHHELD}"
    parts = _QUOTED.split(text)  # odd items are quoted names: kept as they are
    masked = "".join(p if i % 2 else _NUMBER.sub("#", p) for i, p in enumerate(parts))
    return clip(masked, limit)


__all__ = ["LIST_LIMIT", "TEXT_LIMIT", "clip", "clip_list", "quoted", "strip_values"]
