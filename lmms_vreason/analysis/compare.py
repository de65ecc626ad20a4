"""Paired comparison of two runs on the same tasks, and an accuracy-regression gate.

A difference of a point or two on a few hundred docs means nothing without its uncertainty, and
the two runs score the very same docs, so the comparison is paired by ``doc_id``: the interval is
a paired bootstrap over docs and the test is McNemar's (binary scores) or a sign-flip permutation
test (graded scores such as MRA); see :mod:`lmms_vreason.analysis.stats` for when which variant
is used. Runs over different doc sets cannot be paired and are refused with the difference listed.

Gate rule: a benchmark regresses when B is more than ``margin`` points below A (observed
difference) *and* the paired test rejects "no difference" at level ``alpha``. Both are needed: the
margin ignores significant but negligible drops on big sets, the test ignores large but noisy
drops on small ones.

Library use::

    from lmms_vreason.analysis.compare import compare_runs, gate_failures, format_comparison
    rows = compare_runs("runs/base", "runs/vreason", n_resamples=10_000, level=0.95, seed=0)
    print(format_comparison(rows, "base", "vreason", margin=1.0, alpha=0.05))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmms_vreason.analysis import stats
from lmms_vreason.analysis.benchmark_names import benchmark_of
from lmms_vreason.analysis.runs import RunDir, RunInputError, open_run
from lmms_vreason.analysis.scores import DocScores, read_doc_scores
from lmms_vreason.analysis.tables import format_number, markdown_table
from lmms_vreason.benchmarks import TABLE1_COLUMNS

_MAX_LISTED = 20


@dataclass(frozen=True)
class BenchmarkComparison:
    """B versus A on one task; scores, difference and interval in points (0-100)."""

    task: str
    metric: str
    n_docs: int
    score_a: float
    score_b: float
    delta: float
    ci_low: float
    ci_high: float
    level: float
    test: str
    p_value: float
    discordant: tuple[int, int] | None = None
    """(A right and B wrong, A wrong and B right) for binary scores."""

    def is_regression(self, margin: float, alpha: float) -> bool:
        """B dropped by more than ``margin`` points and the drop is significant at ``alpha``."""
        return self.delta < -margin and self.p_value < alpha


def _listed(ids: Iterable[int]) -> str:
    ids = sorted(ids)
    more = f" ... (+{len(ids) - _MAX_LISTED} more)" if len(ids) > _MAX_LISTED else ""
    return f"{ids[:_MAX_LISTED]}{more}"


def pair_scores(a: DocScores, b: DocScores) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Both runs' scores aligned by ``doc_id``; different doc sets are an error naming the difference."""
    ids_a, ids_b = set(a.scores), set(b.scores)
    if ids_a != ids_b:
        raise RunInputError(
            f"task {a.task!r}: the runs scored different docs; only in A ({a.source}): "
            f"{_listed(ids_a - ids_b)}; only in B ({b.source}): {_listed(ids_b - ids_a)}"
        )
    ids = sorted(ids_a)
    return ids, np.array([a.scores[i] for i in ids]), np.array([b.scores[i] for i in ids])


def compare_scores(
    a: DocScores,
    b: DocScores,
    *,
    n_resamples: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
    n_permutations: int = 10_000,
) -> BenchmarkComparison:
    """Difference, paired bootstrap interval and paired test for one task."""
    if a.metric != b.metric:
        raise RunInputError(f"task {a.task!r}: A reports {a.metric!r} but B reports {b.metric!r}")
    ids, x, y = pair_scores(a, b)
    diff = y - x
    low, high = stats.paired_bootstrap_ci(diff, n_resamples=n_resamples, level=level, seed=seed)
    discordant = None
    if stats.is_binary(x, y):
        test = stats.mcnemar(x, y)
        discordant = stats.discordant_counts(x, y)
    else:
        test = stats.sign_flip_test(diff, n_permutations=n_permutations, seed=seed)
    return BenchmarkComparison(
        task=a.task,
        metric=a.metric,
        n_docs=len(ids),
        score_a=100.0 * float(x.mean()),
        score_b=100.0 * float(y.mean()),
        delta=100.0 * float(diff.mean()),
        ci_low=100.0 * low,
        ci_high=100.0 * high,
        level=level,
        test=test.method,
        p_value=test.p_value,
        discordant=discordant,
    )


def _task_order(task: str) -> tuple[int, str]:
    known = [c.task for c in TABLE1_COLUMNS]
    return (known.index(task) if task in known else len(known), task)


def select_tasks(run_a: RunDir, run_b: RunDir, tasks: Sequence[str] | None = None) -> list[str]:
    """The tasks to compare: the requested ones, or all -- which must then be the same in both runs."""
    for run in (run_a, run_b):
        if not run.samples:
            raise RunInputError(
                f"no samples files (*_samples_<task>.jsonl) under {run.path}; rerun with --log_samples"
            )
    have_a, have_b = set(run_a.samples), set(run_b.samples)
    if tasks is None:
        if have_a != have_b:
            raise RunInputError(
                f"the runs evaluated different tasks; only in A ({run_a.path}): {sorted(have_a - have_b)}; "
                f"only in B ({run_b.path}): {sorted(have_b - have_a)}; pick common ones with --tasks"
            )
        wanted = have_a
    else:
        wanted = set(tasks)
        missing = {str(run.path): sorted(wanted - set(run.samples)) for run in (run_a, run_b)}
        missing = {k: v for k, v in missing.items() if v}
        if missing:
            raise RunInputError(f"requested tasks without samples: {missing}")
    return sorted(wanted, key=_task_order)


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    *,
    tasks: Sequence[str] | None = None,
    metrics: Mapping[str, str] | None = None,
    n_resamples: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
    n_permutations: int = 10_000,
) -> list[BenchmarkComparison]:
    """Compare run B against run A task by task (``metrics`` overrides a task's compared metric)."""
    ra, rb = open_run(run_a), open_run(run_b)
    rows = []
    for task in select_tasks(ra, rb, tasks):
        metric = (metrics or {}).get(task)
        a = read_doc_scores(ra.samples[task], task, metric)
        b = read_doc_scores(rb.samples[task], task, metric)
        rows.append(
            compare_scores(
                a, b, n_resamples=n_resamples, level=level, seed=seed, n_permutations=n_permutations
            )
        )
    return rows


def gate_failures(
    rows: Iterable[BenchmarkComparison], margin: float, alpha: float
) -> list[BenchmarkComparison]:
    """The rows that count as a significant regression beyond ``margin`` points."""
    return [r for r in rows if r.is_regression(margin, alpha)]


def format_comparison(
    rows: Sequence[BenchmarkComparison],
    label_a: str = "A",
    label_b: str = "B",
    *,
    margin: float | None = None,
    alpha: float | None = None,
) -> str:
    """A Markdown table of the comparison; with ``margin`` and ``alpha`` a gate verdict per row."""
    gate = margin is not None and alpha is not None
    level = f"{rows[0].level * 100:g}% CI" if rows else "CI"
    header = ["Benchmark", "Task", "Metric", "n", label_a, label_b, "Δ (B−A)", level, "Test", "p"]
    if gate:
        header.append("Gate")
    body = []
    for r in rows:
        test = r.test + (f" [{r.discordant[0]}↓/{r.discordant[1]}↑]" if r.discordant else "")
        cells = [
            benchmark_of(r.task),
            r.task,
            r.metric,
            str(r.n_docs),
            format_number(r.score_a, 1),
            format_number(r.score_b, 1),
            f"{r.delta:+.1f}",
            f"[{r.ci_low:+.1f}, {r.ci_high:+.1f}]",
            test,
            f"{r.p_value:.3g}",
        ]
        if gate:
            cells.append("REGRESSION" if r.is_regression(margin, alpha) else "ok")
        body.append(cells)
    text = markdown_table(header, body, left=3)
    if gate:
        text += (
            f"\n\nGate: a row fails when Δ < −{margin:g} points and p < {alpha:g}. "
            "[x↓/y↑] = docs A got right and B wrong / A wrong and B right."
        )
    return text
