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

import argparse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmms_vreason.analysis import stats
from lmms_vreason.analysis.cli import EXIT_CHECK_FAILED, EXIT_OK, resolve_labels, run_main
from lmms_vreason.analysis.runs import RunDir, RunInputError, open_run
from lmms_vreason.analysis.scores import DocScores, read_doc_scores
from lmms_vreason.analysis.tables import format_number, markdown_table
from lmms_vreason.benchmarks import TABLE1_COLUMNS, benchmark_of
from lmms_vreason.cli import HelpFormatter, prog

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


# ----------------------------------------------------------------------------- CLI

CLI_HELP = """Compare two runs of the same tasks, doc by doc, and optionally gate on accuracy regressions.

    vreason compare runs/base runs/vreason
    vreason compare runs/main runs/pr --gate --margin 1.0 --alpha 0.05   # CI check

Each run is an lmms-eval ``--output_path`` written with ``--log_samples``. Per task: scores of A
and B, Δ = B − A in points, a paired bootstrap interval (docs resampled with replacement, fixed
seed), and McNemar's test for 0/1 scores (exact binomial below 25 discordant docs, chi-square with
continuity correction otherwise) or a sign-flip permutation test for graded scores (MRA).

Exit codes: 0 = fine (or no --gate); 1 = --gate and some task dropped by more than --margin points
with p < --alpha; 2 = bad input (missing run, no samples, different tasks or docs).
"""


def _metric_overrides(items: Sequence[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        task, sep, metric = item.partition("=")
        if not sep or not task or not metric:
            raise RunInputError(f"--metric must look like TASK=METRIC, got {item!r}")
        out[task] = metric
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog("compare"), description=CLI_HELP, formatter_class=HelpFormatter)
    p.add_argument("run_a", metavar="A", help="reference run (e.g. the baseline or main branch)")
    p.add_argument("run_b", metavar="B", help="candidate run")
    p.add_argument("--labels", nargs=2, metavar=("LABEL_A", "LABEL_B"), help="column names for A and B")
    p.add_argument("--tasks", nargs="+", help="only these tasks (default: all; then both runs must match)")
    p.add_argument("--metric", action="append", metavar="TASK=METRIC", help="metric to compare for a task")
    p.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of the interval")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and permutation draws")
    p.add_argument("--n-perm", type=int, default=10_000, help="Monte Carlo sign flips for graded scores")
    p.add_argument("--gate", action="store_true", help="exit 1 on a significant drop beyond --margin")
    p.add_argument("--margin", type=float, default=1.0, help="tolerated drop in points")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the gate")
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    label_a, label_b = resolve_labels(
        2, args.labels, [open_run(args.run_a).label, open_run(args.run_b).label]
    )
    rows = compare_runs(
        args.run_a,
        args.run_b,
        tasks=args.tasks,
        metrics=_metric_overrides(args.metric),
        n_resamples=args.n_boot,
        level=args.level,
        seed=args.seed,
        n_permutations=args.n_perm,
    )
    gate = {"margin": args.margin, "alpha": args.alpha} if args.gate else {}
    print(f"A = {label_a} ({args.run_a})\nB = {label_b} ({args.run_b})\n")
    print(format_comparison(rows, label_a, label_b, **gate))
    if not args.gate:
        return EXIT_OK
    failed = gate_failures(rows, args.margin, args.alpha)
    if failed:
        names = ", ".join(f"{r.task} ({r.delta:+.1f})" for r in failed)
        print(f"\nGATE FAILED: significant drop beyond {args.margin:g} points in {names}")
        return EXIT_CHECK_FAILED
    print(f"\nGATE PASSED: no task dropped by more than {args.margin:g} points with p < {args.alpha:g}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``vreason compare A B``: exit 0 fine, 1 gate failed, 2 bad input."""
    return run_main(_main, argv)
