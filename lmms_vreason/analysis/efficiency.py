"""Cost per benchmark from telemetry, relative to a baseline run (the layout of Tables 5 and 6).

Rows are runs (the baseline first), columns are benchmarks plus ``Average``; every non-baseline
cell carries its change against the baseline, e.g. ``4.13 [↓61.4%]``. As in the paper, a cell is
a mean over samples and ``Average`` is the unweighted mean of the benchmark cells, so a large
benchmark does not dominate it. Samples whose video failed to load (``error`` set) are left out:
they cost nothing and would make a run look cheaper than it is.
"""

from __future__ import annotations

import argparse
import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmms_vreason.analysis.cli import EXIT_OK, load_labelled_traces, run_main
from lmms_vreason.analysis.runs import RunInputError
from lmms_vreason.analysis.tables import format_change, format_number, markdown_table, relative_change
from lmms_vreason.benchmarks import benchmark_of, ordered
from lmms_vreason.cli import HelpFormatter, prog
from lmms_vreason.telemetry import SampleTrace

GIB = 1024**3
AVERAGE = "Average"


@dataclass(frozen=True)
class Metric:
    """One cost table: the :class:`CostSummary` field it shows, its title and its precision."""

    key: str
    title: str
    digits: int


METRICS: tuple[Metric, ...] = (
    Metric("output_tokens", "Mean output tokens per sample", 1),
    Metric("seconds", "Seconds per sample (prefill + decode)", 2),
    Metric("peak_mem_gib", "Peak memory per sample (GiB = 2^30 bytes)", 2),
)


@dataclass(frozen=True)
class CostSummary:
    """Means over one benchmark's successful samples (``None`` where nothing was measured)."""

    n: int
    errors: int
    output_tokens: float | None
    seconds: float | None
    peak_mem_gib: float | None


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def summarize(traces: Sequence[SampleTrace]) -> dict[str, CostSummary]:
    """Per-benchmark means of output tokens, prefill+decode seconds and peak memory."""
    groups: dict[str, list[SampleTrace]] = defaultdict(list)
    for trace in traces:
        groups[benchmark_of(trace.task)].append(trace)
    out = {}
    for bench, rows in groups.items():
        ok = [t for t in rows if t.error is None]
        mem = [t.peak_mem_bytes / GIB for t in ok if t.peak_mem_bytes is not None]
        out[bench] = CostSummary(
            n=len(ok),
            errors=len(rows) - len(ok),
            output_tokens=_mean([t.output_tokens for t in ok]),
            seconds=_mean([t.prefill_s + t.decode_s for t in ok]),
            peak_mem_gib=_mean(mem),
        )
    return out


@dataclass(frozen=True)
class EfficiencyReport:
    """Cost summaries of several runs over the same benchmarks; ``runs[0]`` is the baseline."""

    runs: tuple[tuple[str, dict[str, CostSummary]], ...]
    benchmarks: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.benchmarks, AVERAGE)

    def value(self, run: int, metric: str, column: str) -> float | None:
        """A cell: a benchmark mean, or the mean of the benchmark cells for ``Average``."""
        costs = self.runs[run][1]
        if column != AVERAGE:
            return getattr(costs[column], metric)
        cells = [getattr(costs[b], metric) for b in self.benchmarks]
        return None if any(c is None for c in cells) else float(np.mean(cells))

    def change(self, run: int, metric: str, column: str) -> float | None:
        """Percent change of a cell against the baseline's cell."""
        return relative_change(self.value(run, metric, column), self.value(0, metric, column))


def build_report(runs: Sequence[tuple[str, Sequence[SampleTrace]]]) -> EfficiencyReport:
    """Summarise each (label, traces) run; the first is the baseline. All must cover the same benchmarks."""
    if not runs:
        raise RunInputError("no runs given")
    labels = [label for label, _ in runs]
    if len(set(labels)) != len(labels):
        raise RunInputError(f"run labels must be distinct, got {labels}; pass --labels")
    summaries = [(label, summarize(traces)) for label, traces in runs]
    base = set(summaries[0][1])
    for label, costs in summaries[1:]:
        if set(costs) != base:
            raise RunInputError(
                f"run {label!r} covers different benchmarks than baseline {labels[0]!r}: "
                f"missing {sorted(base - set(costs))}, extra {sorted(set(costs) - base)}"
            )
    return EfficiencyReport(runs=tuple(summaries), benchmarks=tuple(ordered(base)))


def _count(cost: CostSummary) -> str:
    return f"{cost.n} ({cost.errors} failed)" if cost.errors else str(cost.n)


def to_markdown(report: EfficiencyReport) -> str:
    """One table per metric; the baseline row is plain, the others carry ``[↓x%]`` changes."""
    baseline = report.runs[0][0]
    parts = [f"# Efficiency report (baseline: {baseline})"]
    for metric in METRICS:
        rows = []
        for i, (label, _) in enumerate(report.runs):
            cells = [label]
            for col in report.columns:
                text = format_number(report.value(i, metric.key, col), metric.digits)
                change = format_change(report.change(i, metric.key, col)) if i else ""
                cells.append(f"{text} {change}".strip())
            rows.append(cells)
        parts.append(f"## {metric.title}\n\n" + markdown_table(["Run", *report.columns], rows))
    counts = [[label] + [_count(costs[b]) for b in report.benchmarks] for label, costs in report.runs]
    parts.append("## Samples per cell\n\n" + markdown_table(["Run", *report.benchmarks], counts))
    return "\n\n".join(parts) + "\n"


CSV_FIELDS = ("metric", "run", "benchmark", "value", "baseline", "ratio", "change_pct", "n_samples")


def to_csv(report: EfficiencyReport) -> str:
    """Long format, one row per (metric, run, column), for spreadsheets and further plotting."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for metric in METRICS:
        for i, (label, costs) in enumerate(report.runs):
            for col in report.columns:
                value, base = report.value(i, metric.key, col), report.value(0, metric.key, col)
                change = report.change(i, metric.key, col)
                n = costs[col].n if col != AVERAGE else sum(costs[b].n for b in report.benchmarks)
                writer.writerow(
                    [
                        metric.key,
                        label,
                        col,
                        "" if value is None else f"{value:.6g}",
                        "" if base is None else f"{base:.6g}",
                        "" if change is None else f"{1 + change / 100:.6g}",
                        "" if change is None else f"{change:.4g}",
                        n,
                    ]
                )
    return buf.getvalue()


# ----------------------------------------------------------------------------- CLI

CLI_HELP = """Efficiency of runs against a baseline, per benchmark (Tables 5 and 6 of the paper).

    vreason efficiency --baseline runs/base runs/lite runs/full \\
        --labels Qwen2.5-VL "V-Reason (Lite)" V-Reason --out reports/

Each run is an lmms-eval ``--output_path`` holding ``vreason_telemetry_rank*.jsonl``. Prints the
Markdown report (mean output tokens, seconds per sample = prefill + decode, peak memory in GiB;
rows = runs, columns = benchmarks + Average, "[↓x%]" = change vs the baseline); with ``--out``
also writes ``efficiency.md`` and ``efficiency.csv`` (long format) there.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog("efficiency"), description=CLI_HELP, formatter_class=HelpFormatter)
    p.add_argument("--baseline", required=True, metavar="RUN", help="the run the others are compared to")
    p.add_argument("runs", nargs="+", metavar="RUN", help="runs to compare with the baseline")
    p.add_argument("--labels", nargs="+", help="display names for the baseline then each RUN")
    p.add_argument("--tasks", nargs="+", help="only these tasks (default: all in the telemetry)")
    p.add_argument("--out", help="directory for efficiency.md and efficiency.csv")
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
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


def main(argv: Sequence[str] | None = None) -> int:
    """``vreason efficiency --baseline RUN RUN...``: exit 0, or 2 on bad input."""
    return run_main(_main, argv)
