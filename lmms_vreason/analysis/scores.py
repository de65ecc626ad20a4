"""Per-doc scores from lmms-eval's ``<date_id>_samples_<task>.jsonl`` files.

Each line is one doc: ``doc_id``, the response, and the per-doc values that the task's
``process_results`` returned, merged in under their metric names. Tasks disagree on scale (accuracy
as 0/1 or 0/100, MRA in [0, 1] or percent) and on shape (a bare number, or a dict carrying a
``score`` for a custom aggregation), so everything is brought to a fraction in [0, 1] here and the
report multiplies by 100 once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmms_vreason.analysis.runs import RunInputError
from lmms_vreason.benchmarks import metric_of

METRIC_CANDIDATES: tuple[str, ...] = ("accuracy", "mra", "exact_match", "acc", "score")
"""Tried in order for tasks :mod:`lmms_vreason.benchmarks` does not name."""


@dataclass(frozen=True)
class DocScores:
    """One task's per-doc scores of one run, as fractions in [0, 1]."""

    task: str
    metric: str
    scores: Mapping[int, float]
    source: Path


def _number(value: Any, metric: str) -> float | None:
    """A per-doc metric value as a float; dicts (custom aggregations) carry it under ``score``."""
    if isinstance(value, Mapping):
        for key in ("score", metric, "accuracy"):
            if key in value:
                return _number(value[key], metric)
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _pick_metric(task: str, row: Mapping[str, Any], source: Path) -> str:
    known = metric_of(task)
    if known is not None:
        return known
    for name in METRIC_CANDIDATES:
        if name in row:
            return name
    raise RunInputError(
        f"{source}: cannot tell which metric to compare for task {task!r} (none of {METRIC_CANDIDATES}); "
        "name it explicitly"
    )


def to_fraction(values: Mapping[int, float], source: Path, metric: str) -> dict[int, float]:
    """Scale per-doc values to [0, 1]: any value above 1 means the file is in percent."""
    if not values:
        return {}
    top = max(values.values())
    scale = 100.0 if top > 1.0 + 1e-9 else 1.0
    out = {k: v / scale for k, v in values.items()}
    bad = [k for k, v in out.items() if not -1e-9 <= v <= 1.0 + 1e-9]
    if bad:
        raise RunInputError(f"{source}: {metric} values outside [0, 1] and [0, 100] for doc_ids {bad[:10]}")
    return out


def read_doc_scores(path: str | Path, task: str, metric: str | None = None) -> DocScores:
    """Per-doc scores of one samples file, keyed by ``doc_id`` (which must be unique)."""
    source = Path(path)
    raw: dict[int, float] = {}
    with source.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RunInputError(f"{source}:{lineno}: not JSON ({exc})") from exc
            if "doc_id" not in row:
                raise RunInputError(f"{source}:{lineno}: no doc_id (is this an lmms-eval samples file?)")
            if metric is None:
                metric = _pick_metric(task, row, source)
            doc_id = int(row["doc_id"])
            if metric not in row:
                raise RunInputError(f"{source}:{lineno}: doc_id {doc_id} has no {metric!r} value")
            value = _number(row[metric], metric)
            if value is None:
                raise RunInputError(
                    f"{source}:{lineno}: doc_id {doc_id}: {metric}={row[metric]!r} is not a score"
                )
            if doc_id in raw:
                raise RunInputError(f"{source}: doc_id {doc_id} appears more than once")
            raw[doc_id] = value
    if not raw or metric is None:
        raise RunInputError(f"{source}: no samples")
    return DocScores(task=task, metric=metric, scores=to_fraction(raw, source, metric), source=source)
