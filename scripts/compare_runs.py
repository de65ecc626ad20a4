#!/usr/bin/env python
"""Compare two runs of the same tasks, doc by doc, and optionally gate on accuracy regressions.

    python scripts/compare_runs.py runs/base runs/vreason
    python scripts/compare_runs.py runs/main runs/pr --gate --margin 1.0 --alpha 0.05   # CI check

Each run is an lmms-eval ``--output_path`` written with ``--log_samples``. Per task: scores of A
and B, Δ = B − A in points, a paired bootstrap interval (docs resampled with replacement, fixed
seed), and McNemar's test for 0/1 scores (exact binomial below 25 discordant docs, chi-square with
continuity correction otherwise) or a sign-flip permutation test for graded scores (MRA).

Exit codes: 0 = fine (or no --gate); 1 = --gate and some task dropped by more than --margin points
with p < --alpha; 2 = bad input (missing run, no samples, different tasks or docs).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lmms_vreason.analysis.cli import EXIT_CHECK_FAILED, EXIT_OK, resolve_labels, run_main
from lmms_vreason.analysis.compare import compare_runs, format_comparison, gate_failures
from lmms_vreason.analysis.runs import RunInputError, open_run


def _metric_overrides(items: Sequence[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        task, sep, metric = item.partition("=")
        if not sep or not task or not metric:
            raise RunInputError(f"--metric must look like TASK=METRIC, got {item!r}")
        out[task] = metric
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_a", metavar="A", help="reference run (e.g. the baseline or main branch)")
    p.add_argument("run_b", metavar="B", help="candidate run")
    p.add_argument("--labels", nargs=2, metavar=("LABEL_A", "LABEL_B"), help="column names for A and B")
    p.add_argument("--tasks", nargs="+", help="only these tasks (default: all; then both runs must match)")
    p.add_argument("--metric", action="append", metavar="TASK=METRIC", help="metric to compare for a task")
    p.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    p.add_argument(
        "--level", type=float, default=0.95, help="confidence level of the interval (default 0.95)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and permutation draws")
    p.add_argument("--n-perm", type=int, default=10_000, help="Monte Carlo sign flips for graded scores")
    p.add_argument("--gate", action="store_true", help="exit 1 on a significant drop beyond --margin")
    p.add_argument("--margin", type=float, default=1.0, help="tolerated drop in points (default 1.0)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the gate (default 0.05)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(run_main(main))
