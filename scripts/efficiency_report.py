#!/usr/bin/env python
"""Efficiency of runs against a baseline, per benchmark (Tables 5 and 6 of the paper).

    python scripts/efficiency_report.py --baseline runs/base runs/lite runs/full \\
        --labels Qwen2.5-VL "V-Reason (Lite)" V-Reason --out reports/

Each run is an lmms-eval ``--output_path`` holding ``vreason_telemetry_rank*.jsonl``. Prints the
Markdown report (mean output tokens, seconds per sample = prefill + decode, peak memory in GiB;
rows = runs, columns = benchmarks + Average, "[↓x%]" = change vs the baseline); with ``--out``
also writes ``efficiency.md`` and ``efficiency.csv`` (long format) there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lmms_vreason.analysis.cli import EXIT_OK, load_labelled_traces, run_main
from lmms_vreason.analysis.efficiency import build_report, to_csv, to_markdown


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", required=True, metavar="RUN", help="the run the others are compared to")
    p.add_argument("runs", nargs="+", metavar="RUN", help="runs to compare with the baseline")
    p.add_argument("--labels", nargs="+", help="display names for the baseline then each RUN")
    p.add_argument("--tasks", nargs="+", help="only these tasks (default: all in the telemetry)")
    p.add_argument("--out", help="directory for efficiency.md and efficiency.csv")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    runs = load_labelled_traces([args.baseline, *args.runs], args.labels, args.tasks)
    report = build_report(list(runs.items()))
    markdown = to_markdown(report)
    print(markdown)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "efficiency.md").write_text(markdown, encoding="utf-8")
        (out / "efficiency.csv").write_text(to_csv(report), encoding="utf-8")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_main(main))
