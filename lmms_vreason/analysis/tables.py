"""Plain-text rendering shared by the reports: Markdown tables and the paper's "[↓x%]" cells."""

from __future__ import annotations

import math
from collections.abc import Sequence


def relative_change(value: float | None, baseline: float | None) -> float | None:
    """Percent change of ``value`` against ``baseline``; ``None`` where it is undefined."""
    if value is None or baseline is None or not math.isfinite(value) or not math.isfinite(baseline):
        return None
    if baseline == 0:
        return None
    return (value - baseline) / baseline * 100.0


def format_change(pct: float | None) -> str:
    """Tables 5/6 style: ``[↓46.6%]`` for a decrease, ``[↑21.0%]`` for an increase."""
    if pct is None:
        return ""
    shown = round(abs(pct), 1)
    if shown == 0:
        return "[=0.0%]"
    return f"[{'↓' if pct < 0 else '↑'}{shown:.1f}%]"


def format_number(value: float | None, digits: int) -> str:
    """A fixed-precision number, or ``n/a`` when missing."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A GitHub-flavoured Markdown table; the first ``left`` columns (names) left-aligned, numbers right."""
    align = [":---"] * left + ["---:"] * (len(header) - left)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
