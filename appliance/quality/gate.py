"""The site evaluation gate: a candidate's scores against the serving version's, and the table.

Owns the comparison rule and how its outcome reads. A candidate passes when, overall and
in every group, its score is at most ``eval_max_drop`` below the serving version's (a
higher score is always fine). With no serving version there is nothing to compare: the
table shows the candidate's scores alone and it passes. A group the serving version
scored ``n/a`` (one class only, for ``auroc``) is not judged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from appliance.quality.evaluation import Scores

OVERALL = "(all)"


@dataclass(frozen=True)
class GateRow:
    group: str  # OVERALL for every row
    rows: int
    candidate: float
    serving: float | None = None

    @property
    def drop(self) -> float | None:
        """How much lower the candidate scores (negative: higher)."""
        if self.serving is None or math.isnan(self.serving) or math.isnan(self.candidate):
            return None
        return self.serving - self.candidate


@dataclass(frozen=True)
class GateReport:
    model: str
    candidate_version: int
    serving_version: int | None
    metric: str
    max_drop: float
    rows: tuple[GateRow, ...]

    def within(self, row: GateRow) -> bool:
        drop = row.drop
        # A tiny tolerance: the same model scored twice must never fail on rounding.
        return drop is None or drop <= self.max_drop + 1e-12

    @property
    def failing(self) -> tuple[GateRow, ...]:
        return tuple(r for r in self.rows if not self.within(r))

    @property
    def passed(self) -> bool:
        return not self.failing

    def table(self) -> str:
        """The comparison as aligned text lines (the refusal's message and the CLI's)."""
        serving = f"v{self.serving_version}" if self.serving_version is not None else "-"
        header = ("group", "rows", f"serving {serving}", f"candidate v{self.candidate_version}")
        lines = [(*header, "drop", "")]
        for row in self.rows:
            drop = row.drop
            lines.append(
                (
                    row.group,
                    str(row.rows),
                    _number(row.serving),
                    _number(row.candidate),
                    _number(drop),
                    "" if self.within(row) else "REFUSED",
                )
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
            for line in lines
        )

    def summary(self) -> str:
        """One sentence: what was compared and, if refused, where."""
        what = (
            f"model {self.model!r} version {self.candidate_version} against version "
            f"{self.serving_version}"
            if self.serving_version is not None
            else f"model {self.model!r} version {self.candidate_version}"
        )
        if self.passed:
            return f"{what}: {self.metric} within the budget of {self.max_drop}"
        where = ", ".join(
            "overall" if r.group == OVERALL else f"group {r.group!r}" for r in self.failing
        )
        return (
            f"{what}: {self.metric} drops more than eval_max_drop = {self.max_drop} on the "
            f"site's evaluation data ({where})"
        )


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def compare(
    model: str,
    *,
    candidate_version: int,
    candidate: Scores,
    serving_version: int | None,
    serving: Scores | None,
    max_drop: float,
) -> GateReport:
    """The gate's rows: overall first, then each group in name order."""
    rows = [
        GateRow(OVERALL, candidate.rows, candidate.overall, serving.overall if serving else None)
    ]
    for group, (count, value) in candidate.groups.items():
        before = serving.groups.get(group) if serving else None
        rows.append(GateRow(group, count, value, before[1] if before else None))
    return GateReport(
        model=model,
        candidate_version=candidate_version,
        serving_version=serving_version,
        metric=candidate.metric,
        max_drop=max_drop,
        rows=tuple(rows),
    )


__all__ = ["OVERALL", "GateReport", "GateRow", "compare"]
