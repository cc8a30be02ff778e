"""The report: ``report.md`` and ``report.html`` with every variant, the selection, the
per-group check, layer sensitivities and a Pareto plot (``pareto.png``).

Only formatting lives here; the numbers come from ``compress.search``.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

from compress.search import SearchResult, Variant


@dataclass(frozen=True)
class SpeedLabels:
    """What a variant's ``latency_ms`` and ``throughput`` measure, as the report says it."""

    latency: str = "latency b1 (ms)"
    throughput: str = "throughput b32 (/s)"
    throughput_phrase: str = "the throughput at batch 32"
    latency_phrase: str = "faster at batch 1"
    plot_axis: str = "latency at batch 1 (ms)"


ENCODER_SPEED = SpeedLabels()


def _columns(speed: SpeedLabels) -> list[str]:
    return [
        "variant",
        "metric",
        "Δ vs fp32",
        "worst group",
        speed.latency,
        speed.throughput,
        "size (MB)",
        "memory (MB)",
        "in budget",
        "notes",
    ]


def _row(v: Variant, result: SearchResult, metric: str) -> list[str]:
    base = result.baseline.metrics
    worst = min(v.metrics.groups.items(), key=lambda kv: kv[1], default=None)
    mark = "selected" if v is result.selected else ("yes" if v.in_budget else "no")
    notes = "; ".join(filter(None, [v.note, *v.violations]))
    return [
        v.name,
        f"{metric} {v.metrics.metric:.4f}",
        f"{v.metrics.metric - base.metric:+.4f}",
        f"{worst[0]}: {worst[1]:.4f}" if worst else "-",
        f"{v.metrics.latency_ms:.2f}",
        f"{v.metrics.throughput:.0f}",
        f"{v.metrics.size_mb:.2f}",
        f"{v.metrics.memory_mb:.0f}",
        mark,
        notes or "-",
    ]


def pareto_plot(
    result: SearchResult, metric: str, out_path: Path, speed: SpeedLabels = ENCODER_SPEED
) -> Path:
    """Latency (batch 1) against the metric; marker area follows size on disk."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    biggest = max(v.metrics.size_mb for v in result.variants) or 1.0
    for v in result.variants:
        color = "tab:green" if v is result.selected else ("tab:blue" if v.in_budget else "tab:red")
        area = 30 + 400 * v.metrics.size_mb / biggest
        ax.scatter(
            v.metrics.latency_ms,
            v.metrics.metric,
            s=area,
            c=color,
            alpha=0.6,
            edgecolors="black",
            linewidths=0.5,
        )
        ax.annotate(
            v.name,
            (v.metrics.latency_ms, v.metrics.metric),
            fontsize=6,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_xlabel(speed.plot_axis)
    ax.set_ylabel(metric)
    ax.set_title("Variants (green: selected, blue: in budget, red: over; size = area)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return out_path


def _summary(
    result: SearchResult, name: str, metric: str, budget: str, speed: SpeedLabels
) -> list[str]:
    lines = [f"# Compression report: {name}", "", f"Budget: {budget}.", ""]
    if result.selected is None:
        lines += [
            "**No variant meets the budget; no package was written.** Every variant "
            "is listed below with the reason it failed.",
            "",
        ]
    else:
        s, b = result.selected.metrics, result.baseline.metrics
        ratio = s.throughput / b.throughput if b.throughput else math.nan
        lines += [
            f"Selected **{result.selected.name}**: {metric} {s.metric:.4f} "
            f"(fp32 {b.metric:.4f}), {b.size_mb / s.size_mb:.1f}x smaller, "
            f"{ratio:.2f}x {speed.throughput_phrase}, "
            f"{b.latency_ms / s.latency_ms:.2f}x {speed.latency_phrase}.",
            "",
        ]
    return lines


def _groups(result: SearchResult) -> list[list[str]]:
    if not result.baseline.metrics.groups:
        return []
    after = result.selected.metrics.groups if result.selected else {}
    return [
        [g, f"{v:.4f}", f"{after[g]:.4f}" if g in after else "-"]
        for g, v in result.baseline.metrics.groups.items()
    ]


def _sensitivity(result: SearchResult) -> list[list[str]]:
    rows = []
    for key, ranked in result.sensitivity.items():
        rows += [[key, item.block, f"{item.drop:+.4f}", str(len(item.nodes))] for item in ranked]
    return rows


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    return [*out, ""]


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(
    result: SearchResult,
    out_dir: Path,
    name: str,
    metric: str,
    budget: str,
    *,
    extra: list[str] | None = None,
    speed: SpeedLabels = ENCODER_SPEED,
) -> Path:
    """Write report.md, report.html and pareto.png into ``out_dir``; return report.md."""
    pareto_plot(result, metric, out_dir / "pareto.png", speed)
    columns = _columns(speed)
    rows = [_row(v, result, metric) for v in result.variants]
    groups, sens = _groups(result), _sensitivity(result)
    md = _summary(result, name, metric, budget, speed)
    md += ["## Variants", "", *_md_table(columns, rows), "![Pareto plot](pareto.png)", ""]
    if groups:
        md += ["## Per group", "", *_md_table(["group", "fp32", "selected"], groups)]
    if sens:
        md += [
            "## Quantization sensitivity",
            "",
            "Metric drop when only that block is quantized (larger = more sensitive).",
            "",
            *_md_table(["variant", "block", "drop", "nodes"], sens),
        ]
    md += extra or []
    (out_dir / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    parts = [
        f"<h1>Compression report: {html.escape(name)}</h1>",
        "".join(
            f"<p>{html.escape(line)}</p>"
            for line in _summary(result, name, metric, budget, speed)[2:]
            if line
        ),
        "<h2>Variants</h2>",
        _html_table(columns, rows),
        '<p><img src="pareto.png" alt="Pareto plot"></p>',
    ]
    if groups:
        parts += ["<h2>Per group</h2>", _html_table(["group", "fp32", "selected"], groups)]
    if sens:
        parts += [
            "<h2>Quantization sensitivity</h2>",
            _html_table(["variant", "block", "drop", "nodes"], sens),
        ]
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;font-size:0.9em}"
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>"
        f"{html.escape(name)}</title><style>{style}</style></head><body>"
        + "".join(parts)
        + "</body></html>\n"
    )
    (out_dir / "report.html").write_text(page, encoding="utf-8")
    return out_dir / "report.md"


__all__ = ["ENCODER_SPEED", "SpeedLabels", "pareto_plot", "write_report"]
