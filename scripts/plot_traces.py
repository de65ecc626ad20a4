#!/usr/bin/env python
"""Plot V-Reason telemetry of one or more runs (Fig. 1a/1d, 2b-d and 5 of the paper).

    python scripts/plot_traces.py runs/base runs/vreason --labels Qwen2.5-VL V-Reason --out figs/

Each RUN is an lmms-eval ``--output_path`` holding ``vreason_telemetry_rank*.jsonl``. Writes PNG and
PDF of: ``entropy_mean`` (runs overlaid), ``alpha_histogram``, ``output_tokens`` and one
``sample_alpha_<run>`` per run for the same doc (``--sample TASK:DOC_ID``, default the first doc
all runs share).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from lmms_vreason.analysis import plots
from lmms_vreason.analysis.cli import EXIT_OK, load_labelled_traces, run_main
from lmms_vreason.analysis.runs import RunInputError
from lmms_vreason.telemetry import SampleTrace


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN", help="lmms-eval --output_path directories")
    p.add_argument("--labels", nargs="+", help="display names, one per RUN (default: telemetry run label)")
    p.add_argument("--out", required=True, help="directory for the figures")
    p.add_argument("--tasks", nargs="+", help="only these tasks (default: all in the telemetry)")
    p.add_argument("--sample", metavar="TASK:DOC_ID", help="the doc for the single-sample alpha plot")
    p.add_argument("--min-alive", type=int, default=1, help="cut mean curves where fewer samples remain")
    return p.parse_args(argv)


def pick_sample(runs: dict[str, list[SampleTrace]], wanted: str | None) -> tuple[str, int]:
    """The (task, doc_id) for the single-sample plot: the requested one, else the first all runs share."""
    have = [{(t.task, t.doc_id) for t in traces if t.entropy} for traces in runs.values()]
    common = set.intersection(*have)
    if wanted is not None:
        task, sep, doc = wanted.rpartition(":")
        if not sep or not doc.lstrip("-").isdigit():
            raise RunInputError(f"--sample must look like TASK:DOC_ID, got {wanted!r}")
        key = (task, int(doc))
        if key not in common:
            raise RunInputError(f"--sample {wanted}: not in the telemetry of every run (or has no entropy)")
        return key
    if not common:
        raise RunInputError(
            "the runs share no doc with entropy recorded; pass --sample for one run at a time"
        )
    return min(common)


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "run"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    runs = load_labelled_traces(args.runs, args.labels, args.tasks)
    written = plots.plot_mean_entropy(runs, args.out, min_alive=args.min_alive)
    written += plots.plot_alpha_histogram(runs, args.out)
    written += plots.plot_output_tokens(runs, args.out)
    key = pick_sample(runs, args.sample)
    for i, (label, traces) in enumerate(runs.items()):
        trace = next(t for t in traces if (t.task, t.doc_id) == key)
        written += plots.plot_sample_alpha(
            trace, args.out, label=label, name=f"sample_alpha_{i}_{_slug(label)}"
        )
    for path in written:
        print(path)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_main(main))
