"""Pieces shared by the analysis subcommands (``vreason compare|plot|efficiency``): run labels and
uniform error reporting.

Exit codes: 0 success, 1 reserved for "the check found a problem" (the comparison gate), 2 bad
input (as argparse does), so a CI job can tell a regression from a broken invocation.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from lmms_vreason.analysis.runs import RunInputError, load_traces, trace_label
from lmms_vreason.telemetry import SampleTrace

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def resolve_labels(n_runs: int, labels: Sequence[str] | None, defaults: Sequence[str]) -> list[str]:
    """``--labels`` if given (one per run, distinct), else the defaults made distinct by suffixes."""
    if labels:
        if len(labels) != n_runs:
            raise RunInputError(f"--labels got {len(labels)} names for {n_runs} runs")
        if len(set(labels)) != len(labels):
            raise RunInputError(f"--labels must be distinct, got {list(labels)}")
        return list(labels)
    out: list[str] = []
    for name in defaults:
        candidate, k = name, 2
        while candidate in out:
            candidate, k = f"{name} ({k})", k + 1
        out.append(candidate)
    return out


def load_labelled_traces(
    paths: Sequence[str], labels: Sequence[str] | None, tasks: Sequence[str] | None = None
) -> dict[str, list[SampleTrace]]:
    """Telemetry of each run under its label, in the order given."""
    traces = [load_traces(p, tasks) for p in paths]
    names = resolve_labels(
        len(paths), labels, [trace_label(p, t) for p, t in zip(paths, traces, strict=True)]
    )
    return dict(zip(names, traces, strict=True))


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Call a script's ``main`` and turn input errors into one clear line on stderr and exit code 2."""
    try:
        return main(argv)
    except (RunInputError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
