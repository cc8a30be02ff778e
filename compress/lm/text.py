"""Local text for a text-generation recipe, and its tokens packed into rows.

``.txt``: one passage a line. ``.csv``/``.parquet``: a text column and optionally a group
column. Evaluation packs each group's passages (``<s> passage </s>`` after one another)
into rows of a fixed number of tokens, so teacher-forced perplexity needs no padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compress.errors import DataError
from compress.recipe import TextSpec


@dataclass(frozen=True)
class Text:
    passages: list[str]
    groups: list[str] | None = None

    def by_group(self) -> dict[str, list[str]]:
        if self.groups is None:
            return {}
        out: dict[str, list[str]] = {}
        for passage, group in zip(self.passages, self.groups, strict=True):
            out.setdefault(group, []).append(passage)
        return out


def load_text(spec: TextSpec, path: Path) -> Text:
    if not path.exists():
        raise DataError(f"{path}: no such file (expected local text for the recipe)")
    if path.suffix in (".csv", ".parquet"):
        text = _table(spec, path)
    else:
        if spec.group is not None:
            raise DataError(f"{path}: a group column needs a CSV or Parquet table, not text lines")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: expected UTF-8 text, one passage a line: {exc}") from exc
        text = Text([line.strip() for line in lines if line.strip()])
    if spec.limit is not None:
        groups = None if text.groups is None else text.groups[: spec.limit]
        text = Text(text.passages[: spec.limit], groups)
    if not text.passages:
        raise DataError(f"{path}: expected at least one passage of text, found none")
    return text


def _table(spec: TextSpec, path: Path) -> Text:
    import pandas as pd

    try:
        frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: expected a readable table: {exc}") from exc
    for role, column in (("text", spec.column), ("group", spec.group)):
        if column is not None and column not in frame.columns:
            raise DataError(
                f"{path}: expected a {role} column {column!r}, found {list(frame.columns)}"
            )
    passages = frame[spec.column].astype(str).tolist()
    groups = frame[spec.group].astype(str).tolist() if spec.group else None
    return Text(passages, groups)


def pack(tokenizer: Any, passages: list[str], length: int) -> np.ndarray:
    """(rows, length) int64 token ids: the passages with BOS/EOS, cut into full rows."""
    ids: list[int] = []
    for passage in passages:
        ids += [tokenizer.bos_token_id, *tokenizer.encode(passage, add_special_tokens=False)]
        ids.append(tokenizer.eos_token_id)
    rows = len(ids) // length
    if rows == 0:
        raise DataError(
            f"expected at least {length} tokens of text to evaluate, got {len(ids)}: "
            "give more passages or a smaller target.eval_length"
        )
    return np.asarray(ids[: rows * length], dtype=np.int64).reshape(rows, length)


__all__ = ["Text", "load_text", "pack"]
