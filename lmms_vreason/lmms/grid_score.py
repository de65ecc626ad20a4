"""Score every learning rate of a one-pass lr-grid run with the tasks' own lmms-eval code.

A run with ``lr_grid=...`` decodes every request once per lr after one prefill; lmms-eval scores the
grid's first lr, and the backend writes every lr's response to ``vreason_lr_grid_rank*.jsonl``.
This replays those responses through lmms-eval's own evaluator (:mod:`lmms_vreason.lmms.replay`),
so filters, reasoning-tag stripping, ``process_results``, aggregation, groups and standard errors
are exactly a real run's — nothing is re-implemented here.

Per lr it writes an lmms-eval output folder, ``<run>/lr_grid/lr<lr>/<model>/<date>_results.json``
(+ samples), whose ``config.model_args`` carry ``lr=<lr>`` instead of the grid: it reads like a
separate single-lr run to every tool (collation, comparison, the launcher's resume check).

Usage: ``python -m lmms_vreason.lmms.grid_score RUN_DIR`` (``vreason grid-score RUN_DIR``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lmms_vreason.core.settings import lr_label
from lmms_vreason.lmms.replay import replay_evaluate
from lmms_vreason.telemetry import GridResponse, read_grid_responses

GRID_DIR = "lr_grid"
"""Sub-folder of the run folder that holds one lmms-eval output folder per lr."""


def single_lr_model_args(model_args: str, lr: float) -> str:
    """The grid run's ``k=v,...`` model arguments as the single-lr run of ``lr`` would have them."""
    parts = [p for p in model_args.split(",") if p and p.split("=", 1)[0].strip() not in ("lr_grid", "lr")]
    return ",".join([*parts, f"lr={lr!r}"])


def latest_results(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The newest lmms-eval results file of the grid run itself (not of the per-lr folders)."""
    found = [p for p in run_dir.rglob("*_results.json") if GRID_DIR not in p.relative_to(run_dir).parts]
    if not found:
        raise FileNotFoundError(
            f"no lmms-eval results under {run_dir}: run lmms-eval with --output_path there"
        )
    path = max(found, key=lambda p: (p.name, p.stat().st_mtime))
    return path, json.loads(path.read_text(encoding="utf-8"))


def responses_by_lr(rows: Sequence[GridResponse]) -> dict[float, dict[str, dict[int, str]]]:
    """``{lr: {task: {doc_id: response}}}``; a (task, doc, lr) seen twice keeps the last row."""
    table: dict[float, dict[str, dict[int, str]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        table[row.lr][row.task][row.doc_id] = row.response
    return {lr: dict(tasks) for lr, tasks in table.items()}


def score_lr(
    responses: Mapping[str, Mapping[int, str]], run_config: Mapping[str, Any], lr: float, out_dir: Path
) -> dict[str, Any]:
    """lmms-eval's results for one lr (also written under ``out_dir``, as a CLI run writes them)."""
    from lmms_eval import utils
    from lmms_eval.loggers import EvaluationTracker

    resolved = dict(run_config.get("resolved_cli_args") or {})
    model_args = single_lr_model_args(str(run_config.get("model_args") or ""), lr)
    limit = run_config.get("limit")
    tracker = EvaluationTracker(output_path=str(out_dir))
    when = utils.get_datetime_str(
        timezone=resolved.get("timezone") or "Asia/Singapore"
    )  # as the CLI names files
    results = replay_evaluate(
        responses,
        run_config,
        model_args=model_args,
        output_path=str(out_dir),
        tracker=tracker,
        datetime_str=when,
    )
    samples = results.pop("samples")
    # Record what produced the responses (the grid run's generation settings), not the replay's.
    results.setdefault("config", {}).update(
        {"model_args": model_args, "limit": limit, "gen_kwargs": run_config.get("gen_kwargs")}
    )
    tracker.save_results_aggregated(results=results, samples=samples, datetime_str=when)
    for task in results["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])
    return results


def score_grid(run_dir: str | Path) -> dict[float, dict[str, Any]]:
    """Score every lr of the grid run in ``run_dir``; returns lmms-eval's results per lr."""
    run_dir = Path(run_dir)
    _, data = latest_results(run_dir)
    rows = read_grid_responses(run_dir)
    if not rows:
        raise FileNotFoundError(f"no lr-grid responses (vreason_lr_grid_rank*.jsonl) under {run_dir}")
    return {
        lr: score_lr(responses, data.get("config") or {}, lr, run_dir / GRID_DIR / f"lr{lr_label(lr)}")
        for lr, responses in sorted(responses_by_lr(rows).items())
    }


def summary(scored: Mapping[float, Mapping[str, Any]]) -> str:
    """A Markdown table: one row per lr, one column per task metric (percent, as the tasks report)."""
    columns: list[tuple[str, str]] = []
    for results in scored.values():
        for task, entry in results["results"].items():
            for key, value in entry.items():
                if "," in key and "_stderr" not in key and isinstance(value, (int, float)):
                    if (task, key) not in columns:
                        columns.append((task, key))
    lines = ["| lr | " + " | ".join(f"{t} {k.split(',')[0]}" for t, k in columns) + " |"]
    lines.append("|---|" + "---|" * len(columns))
    for lr, results in scored.items():
        cells = [results["results"].get(t, {}).get(k) for t, k in columns]
        lines.append(
            f"| {lr_label(lr)} | " + " | ".join("—" if c is None else f"{c:.2f}" for c in cells) + " |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from lmms_vreason.cli import HelpFormatter, prog

    parser = argparse.ArgumentParser(
        prog=prog("grid-score"), description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument("run_dir", type=Path, help="the --output_path of an lmms-eval run with lr_grid=...")
    args = parser.parse_args(argv)
    try:
        scored = score_grid(args.run_dir)
    except (FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary(scored))
    print(f"\nper-lr lmms-eval outputs: {args.run_dir / GRID_DIR}/lr<lr>/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
