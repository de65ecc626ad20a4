"""Collate run folders into the paper's Table 1 layout, beside the paper's numbers (``vreason collate``).

Input: ``RUN_ROOT/<config name>/`` folders as the launcher writes them (lmms-eval's
``<model>/<date>_results.json`` plus the config copy ``vreason_experiment.yaml``). Output: one row
per run, or per lr grid, with the seven Table 1 numbers, ``Avg`` (mean of the 7) and ``Avg (wo
mra)`` (mean of the 6 without VSI MRA) recomputed here from the per-benchmark numbers (a group
metric may be missing or computed over a different set), gains against a baseline row in brackets
and the paper's number in parentheses; as Markdown or CSV.

"Best over lr grid" (paper, App. B: "the best accuracy is reported over a grid search of 10
learning rates") is read as: the best learning rate is chosen **per benchmark**. Evidence: Table
8's fixed-lr (3e-4) row equals Table 1's Lite row on VSI-Bench, MVBench and VideoMME but is lower
on VideoMMMU, MMVU and TempCompass, which a single lr shared by all benchmarks would not give.
VSI-Bench is one benchmark with two numbers: its lr is chosen by the mean of Acc and MRA (the
paper's headline VSI number) and both are reported from that lr. The averages are then computed
from the selected numbers (they are not the best of the members' averages).
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import io
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from lmms_vreason.analysis.runs import read_results
from lmms_vreason.analysis.tables import markdown_table
from lmms_vreason.benchmarks import AVG_METRIC, AVG_WO_MRA_METRIC, TABLE1_COLUMNS
from lmms_vreason.cli import HelpFormatter, prog
from lmms_vreason.core.settings import lr_label
from lmms_vreason.experiments.configs import (
    PAPER_KEYS,
    ConfigError,
    ExperimentConfig,
    load_configs,
    read_config_copy,
)

COLUMN_KEYS: tuple[str, ...] = tuple(c.key for c in TABLE1_COLUMNS)
WO_MRA_KEYS: tuple[str, ...] = tuple(c.key for c in TABLE1_COLUMNS if c.in_avg_wo_mra)
VSI_KEYS: tuple[str, ...] = tuple(k for k in COLUMN_KEYS if k.startswith("vsi_"))
HEADERS: Mapping[str, str] = MappingProxyType(
    {**{c.key: c.label for c in TABLE1_COLUMNS}, AVG_METRIC: "Avg", AVG_WO_MRA_METRIC: "Avg (wo mra)"}
)
MISSING = "—"


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# ----------------------------------------------------------------------------- reading runs


def averages(values: Mapping[str, float]) -> dict[str, float]:
    """``avg`` over the 7 Table 1 numbers and ``avg_wo_mra`` over the 6 without MRA, when all exist."""
    out: dict[str, float] = {}
    if all(k in values for k in COLUMN_KEYS):
        out[AVG_METRIC] = sum(values[k] for k in COLUMN_KEYS) / len(COLUMN_KEYS)
    if all(k in values for k in WO_MRA_KEYS):
        out[AVG_WO_MRA_METRIC] = sum(values[k] for k in WO_MRA_KEYS) / len(WO_MRA_KEYS)
    return out


@dataclass(frozen=True)
class RunResult:
    """The Table 1 numbers of one run folder (percent), newest result per task."""

    name: str
    path: Path
    config: ExperimentConfig | None
    values: Mapping[str, float]
    stderr: Mapping[str, float] = field(default_factory=dict)
    limit: float | None = None

    def __post_init__(self) -> None:
        unknown = [k for k in self.values if k not in COLUMN_KEYS]
        if unknown:
            raise ValueError(f"run {self.name}: unknown column key(s) {unknown}")
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))
        object.__setattr__(self, "stderr", MappingProxyType(dict(self.stderr)))

    @property
    def lr(self) -> float | None:
        return self.config.lr if self.config is not None else None


def _config_copy(run_dir: Path) -> ExperimentConfig | None:
    try:
        return read_config_copy(run_dir)
    except ConfigError as exc:
        warn(f"ignoring the config copy of {run_dir}: {exc}")
        return None


def read_run(run_dir: Path, config: ExperimentConfig | None = None) -> RunResult | None:
    """Read one run folder; None when it holds no results JSON (not run yet, or failed)."""
    files = read_results(run_dir)
    if not files:
        return None
    config = config or _config_copy(run_dir)
    values: dict[str, float] = {}
    stderr: dict[str, float] = {}
    limits: dict[str, float] = {}  # per column: a full rerun clears an earlier --limit
    for results in files:  # oldest first: a newer file overrides a task it also holds
        for column in TABLE1_COLUMNS:
            value, err = results.metric(column.task, column.metric)
            if value is None:
                continue
            values[column.key] = value
            stderr.pop(column.key, None)
            if err is not None:
                stderr[column.key] = err
            limits.pop(column.key, None)
            if results.limit is not None:
                limits[column.key] = results.limit
    for key, value in values.items():
        if 0 < value <= 1.0:
            warn(f"{run_dir.name}: {key}={value} looks like a fraction; results are expected in percent")
    return RunResult(
        name=run_dir.name,
        path=run_dir,
        config=config,
        values=values,
        stderr=stderr,
        limit=max(limits.values(), default=None),
    )


def read_runs(run_root: Path, configs: Iterable[ExperimentConfig] = ()) -> list[RunResult]:
    """Every run folder directly under ``run_root`` that holds results, sorted by name.

    Dot folders are not runs (the launcher keeps its one-pass lr-grid runs in ``.lr_grid``; their
    results reach the members' own folders).
    """
    if not run_root.is_dir():
        raise FileNotFoundError(f"run root {run_root} is not a directory")
    by_name = {c.name: c for c in configs}
    runs: list[RunResult] = []
    for run_dir in sorted(p for p in run_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        run = read_run(run_dir, by_name.get(run_dir.name))
        if run is not None:
            runs.append(run)
    return runs


# ----------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class Row:
    """One table row: a single run, or the best over an lr grid (``kind='lr_grid'``)."""

    label: str
    kind: Literal["run", "lr_grid"]
    values: Mapping[str, float]
    paper: Mapping[str, float]
    frames_px: str = "?"
    reproduces: str = ""
    baseline: str | None = None
    stderr: Mapping[str, float] = field(default_factory=dict)
    selected: Mapping[str, str] = field(default_factory=dict)
    members: tuple[str, ...] = ()
    limit: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("run", "lr_grid"):
            raise ValueError(f"row kind must be 'run' or 'lr_grid', got {self.kind!r}")
        for name in ("values", "paper", "stderr", "selected"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    @property
    def display_label(self) -> str:
        if self.kind == "lr_grid":
            return f"{self.label} (best over lr grid, {len(self.members)} lrs)"
        return self.label


def _natural_key(text: str) -> list[Any]:
    return [
        float(part) if re.fullmatch(r"\d+(?:\.\d+)?", part) else part
        for part in re.split(r"(\d+(?:\.\d+)?)", text)
    ]


def row_from_run(run: RunResult) -> Row:
    config = run.config
    values = {**run.values, **averages(run.values)}
    return Row(
        label=run.name,
        kind="run",
        values=values,
        paper=dict(config.paper) if config else {},
        frames_px=config.frames_px if config else "?",
        reproduces=config.reproduces if config else "",
        baseline=config.baseline if config else None,
        stderr=run.stderr,
        limit=run.limit,
    )


def _lr_text(run: RunResult) -> str:
    return lr_label(run.lr) if run.lr is not None else run.name


def best_over_grid(label: str, members: Sequence[RunResult]) -> Row:
    """The paper's "best over lr grid" row: the best lr per benchmark (VSI Acc+MRA chosen together)."""
    if not members:
        raise ValueError(f"lr grid {label!r} has no runs")
    ordered = sorted(members, key=lambda r: (r.lr if r.lr is not None else float("inf"), r.name))
    values: dict[str, float] = {}
    stderr: dict[str, float] = {}
    selected: dict[str, str] = {}

    def take(keys: Sequence[str], run: RunResult) -> None:
        for key in keys:
            values[key] = run.values[key]
            if key in run.stderr:
                stderr[key] = run.stderr[key]
            selected[key] = _lr_text(run)

    with_vsi = [r for r in ordered if all(k in r.values for k in VSI_KEYS)]
    if with_vsi:  # ties go to the smallest lr (stable max over the lr-sorted list)
        take(VSI_KEYS, max(with_vsi, key=lambda r: sum(r.values[k] for k in VSI_KEYS)))
    per_column = [k for k in COLUMN_KEYS if k not in VSI_KEYS or not with_vsi]
    for key in per_column:
        candidates = [r for r in ordered if key in r.values]
        if candidates:
            take((key,), max(candidates, key=lambda r: r.values[key]))
    values.update(averages(values))
    first = ordered[0].config
    papers = {tuple(sorted(r.config.paper.items())) for r in ordered if r.config is not None}
    if len(papers) > 1:
        warn(f"lr grid {label}: members quote different paper numbers; using {ordered[0].name}'s")
    limits = {r.limit for r in ordered}
    return Row(
        label=label,
        kind="lr_grid",
        values=values,
        paper=dict(first.paper) if first else {},
        frames_px=first.frames_px if first else "?",
        reproduces=first.reproduces.split(";")[0] if first else "",
        baseline=first.baseline if first else None,
        stderr=stderr,
        selected=selected,
        members=tuple(r.name for r in ordered),
        limit=max((x for x in limits if x is not None), default=None),
    )


def build_rows(
    runs: Sequence[RunResult], *, show_grid_members: bool = False
) -> tuple[list[Row], dict[str, Row]]:
    """Rows to show (grids collapsed to their best unless asked), and every row by label.

    The lookup also holds collapsed grid members, so a baseline may name any run.
    """
    groups: dict[str, list[RunResult]] = {}
    singles: list[RunResult] = []
    for run in runs:
        group = run.config.lr_grid_group if run.config is not None else None
        if group is not None:
            groups.setdefault(group, []).append(run)
        else:
            singles.append(run)
    lookup: dict[str, Row] = {run.name: row_from_run(run) for run in runs}
    shown: list[Row] = [lookup[run.name] for run in singles]
    for label, members in groups.items():
        if label in lookup:
            warn(f"lr grid label {label} is also a run name; the grid row wins in lookups")
        grid_row = best_over_grid(label, members)
        lookup[label] = grid_row
        shown.append(grid_row)
        if show_grid_members:
            shown.extend(lookup[m.name] for m in members)
    shown.sort(key=lambda r: _natural_key(r.label))
    return shown, lookup


def gains(row: Row, base: Row | None) -> dict[str, float]:
    """Ours minus the baseline's ours, for every key both have (from unrounded values, as the paper)."""
    if base is None or base is row:
        return {}
    return {k: row.values[k] - base.values[k] for k in PAPER_KEYS if k in row.values and k in base.values}


def paper_gains(row: Row, base: Row | None) -> dict[str, float]:
    """The paper's own gain for the same pair of rows, to compare against ours."""
    if base is None or base is row:
        return {}
    return {k: row.paper[k] - base.paper[k] for k in PAPER_KEYS if k in row.paper and k in base.paper}


@dataclass(frozen=True)
class Table:
    """Rows plus, for each, the baseline row its gains are computed against."""

    rows: tuple[Row, ...]
    baselines: Mapping[str, Row | None]
    global_baseline: str | None = None


def make_table(
    runs: Sequence[RunResult],
    *,
    baseline: str | None = None,
    only: Sequence[str] = (),
    show_grid_members: bool = False,
) -> Table:
    """Build the table. ``baseline`` (a run name or lr grid label) applies to every row; without it,
    each row uses its config's own ``baseline:`` key. ``only``: fnmatch patterns on row labels."""
    shown, lookup = build_rows(runs, show_grid_members=show_grid_members)
    if baseline is not None and baseline not in lookup:
        raise KeyError(
            f"baseline {baseline!r} is not a run or lr grid under the run root; "
            f"have: {', '.join(sorted(lookup))}"
        )
    if only:
        shown = [
            r for r in shown if any(fnmatch.fnmatchcase(r.label, p) for p in only) or r.label == baseline
        ]
    if baseline is not None:
        base_row = lookup[baseline]
        shown = [base_row, *[r for r in shown if r is not base_row]]
    baselines: dict[str, Row | None] = {}
    for row in shown:
        name = baseline if baseline is not None else row.baseline
        if name is not None and name not in lookup:
            warn(f"{row.label}: baseline {name} has no results under the run root; no gains shown")
        baselines[row.label] = lookup.get(name) if name is not None else None
    return Table(rows=tuple(shown), baselines=baselines, global_baseline=baseline)


# ----------------------------------------------------------------------------- rendering


def fmt_number(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1f}"


def fmt_gain(value: float) -> str:
    rounded = round(value, 1)
    return f"{'+' if rounded >= 0 else '-'}{abs(rounded):.1f}"


def cell(row: Row, key: str, gain: Mapping[str, float], pgain: Mapping[str, float]) -> str:
    """``ours [gain] (paper [paper's gain])``: the paper's bracket style, its numbers beside ours."""
    text = fmt_number(row.values.get(key))
    if key in gain:
        text += f" [{fmt_gain(gain[key])}]"
    if key in row.paper:
        paper = f"{row.paper[key]:.1f}"
        if key in pgain:
            paper += f" [{fmt_gain(pgain[key])}]"
        text += f" ({paper})"
    return text


def render_markdown(table: Table) -> str:
    """The Table 1 layout as a Markdown table, followed by what each row reproduces."""
    header = ["Model", "#F/px", *(HEADERS[k] for k in PAPER_KEYS)]
    body = []
    for row in table.rows:
        label = row.display_label
        if table.global_baseline is not None and row.label == table.global_baseline:
            label += " (baseline)"
        if row.limit is not None:
            label += f" ⚠ limit={row.limit:g}"
        base = table.baselines.get(row.label)
        gain, pgain = gains(row, base), paper_gains(row, base)
        body.append([label, row.frames_px, *(cell(row, k, gain, pgain) for k in PAPER_KEYS)])
    lines = markdown_table(header, body, left=2).splitlines()
    vs = f"`{table.global_baseline}`" if table.global_baseline else "the row's own `baseline:` (listed below)"
    lines += [
        "",
        f"Cells: ours [gain vs {vs}] (paper's number [paper's gain]). {MISSING}: no result. "
        "Avg = mean of the 7 numbers, Avg (wo mra) = mean of the 6 without VSI MRA, "
        "recomputed from the per-benchmark numbers.",
        "",
    ]
    for row in table.rows:
        base = table.baselines.get(row.label)
        parts = [f"- `{row.label}`: {row.reproduces or 'no config found'}"]
        if base is not None and base is not row:
            parts.append(f"gains vs `{base.label}`")
        if row.kind == "lr_grid":
            chosen = ", ".join(f"{HEADERS[k]} {v}" for k, v in row.selected.items())
            parts.append(f"best lr per benchmark (VSI Acc+MRA chosen together): {chosen or 'none'}")
        if row.limit is not None:
            parts.append(f"run with --limit {row.limit:g}: not a full evaluation")
        lines.append("; ".join(parts))
    return "\n".join(lines) + "\n"


def render_csv(table: Table) -> str:
    """One line per row: ours, gain, paper and stderr for every column, plus the lr choices."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    fields = ["row", "kind", "frames_px", "baseline", "n_lrs", "limit"]
    for key in PAPER_KEYS:
        fields += [key, f"{key}_gain", f"{key}_stderr", f"{key}_paper", f"{key}_paper_gain"]
    fields += ["selected_lr", "reproduces"]
    writer.writerow(fields)

    def num(value: float | None) -> str:
        return "" if value is None else f"{value:.4f}".rstrip("0").rstrip(".")

    for row in table.rows:
        base = table.baselines.get(row.label)
        gain, pgain = gains(row, base), paper_gains(row, base)
        record: list[str] = [
            row.label,
            row.kind,
            row.frames_px,
            base.label if base is not None and base is not row else "",
            str(len(row.members)) if row.kind == "lr_grid" else "",
            "" if row.limit is None else f"{row.limit:g}",
        ]
        for key in PAPER_KEYS:
            record += [
                num(row.values.get(key)),
                num(gain.get(key)),
                num(row.stderr.get(key)),
                num(row.paper.get(key)),
                num(pgain.get(key)),
            ]
        record += [";".join(f"{k}={v}" for k, v in row.selected.items()), row.reproduces]
        writer.writerow(record)
    return out.getvalue()


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog("collate"),
        description="Print run folders as the paper's Table 1: ours [gain vs baseline] (paper).\n\n"
        "  vreason collate runs --baseline t1-7b-32f128-base --only 't1-7b-32f128-*'\n"
        "  vreason collate runs --format csv --output table1.csv",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "run_root", type=Path, help="folder with one subfolder per config (the launcher's --output-root)"
    )
    parser.add_argument(
        "--baseline",
        default=None,
        help="run name or lr grid label for every row's gains (default: each config's own)",
    )
    parser.add_argument("--format", choices=("md", "csv"), default="md", help="Markdown or CSV")
    parser.add_argument(
        "--only", action="append", default=[], help="fnmatch pattern on row labels (repeatable)"
    )
    parser.add_argument(
        "--configs",
        action="append",
        default=[],
        help="config files/globs for run folders without a config copy",
    )
    parser.add_argument("--show-grid-members", action="store_true", help="also list every lr of a grid")
    parser.add_argument("--output", type=Path, default=None, help="write here instead of stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        configs = load_configs(args.configs) if args.configs else []
        runs = read_runs(args.run_root, configs)
        if not runs:
            print(f"error: no lmms-eval results under {args.run_root}", file=sys.stderr)
            return 1
        table = make_table(
            runs, baseline=args.baseline, only=args.only, show_grid_members=args.show_grid_members
        )
    except (ConfigError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    text = render_markdown(table) if args.format == "md" else render_csv(table)
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
