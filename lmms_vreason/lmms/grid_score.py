"""Score every learning rate of a one-pass lr-grid run with the tasks' own lmms-eval code.

A run with ``lr_grid=...`` decodes every request once per lr after one prefill; lmms-eval scores the
grid's first lr, and the backend writes every lr's response to ``vreason_lr_grid_rank*.jsonl``.
This replays those responses through lmms-eval's own evaluator (``simple_evaluate`` with a model
that returns the recorded text), so filters, reasoning-tag stripping, ``process_results``,
aggregation, groups and standard errors are exactly a real run's — nothing is re-implemented here.

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
from lmms_vreason.telemetry import GridResponse, read_grid_responses

GRID_DIR = "lr_grid"
"""Sub-folder of the run folder that holds one lmms-eval output folder per lr."""
LMMS_EVAL_REASONING_TAGS = '[["<think>", "</think>"], ["<analysis>", "</analysis>"]]'
"""lmms-eval's command-line default, used when the run's results do not record its arguments."""


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


def _replay_model(responses: Mapping[str, Mapping[int, str]]) -> Any:
    import torch
    from lmms_eval.api.model import lmms

    class ReplayModel(lmms):
        """Answers every request with the response the grid run recorded for it."""

        is_simple = False

        def __init__(self) -> None:
            super().__init__()
            self._device = torch.device("cpu")

        @property
        def device(self) -> torch.device:
            return self._device

        def generate_until(self, requests: list) -> list[str]:
            missing = [
                (r.args[4], r.args[3]) for r in requests if r.args[3] not in responses.get(r.args[4], {})
            ]
            if missing:
                raise KeyError(f"the lr-grid file has no response for (task, doc_id) {missing[:5]}")
            return [responses[r.args[4]][r.args[3]] for r in requests]

        def generate_until_multi_round(self, requests: list) -> list[str]:
            raise NotImplementedError("lr-grid runs are single-round")

        def loglikelihood(self, requests: list) -> list:
            raise NotImplementedError("lr-grid runs only generate")

    return ReplayModel()


def score_lr(
    responses: Mapping[str, Mapping[int, str]], run_config: Mapping[str, Any], lr: float, out_dir: Path
) -> dict[str, Any]:
    """lmms-eval's results for one lr (also written under ``out_dir``, as a CLI run writes them)."""
    from lmms_eval import evaluator, utils
    from lmms_eval.loggers import EvaluationTracker
    from lmms_eval.tasks import TaskManager

    from lmms_vreason.lmms.task_registry import register_task_dir

    register_task_dir()
    resolved = dict(run_config.get("resolved_cli_args") or {})
    model_args = single_lr_model_args(str(run_config.get("model_args") or ""), lr)
    cli_args = argparse.Namespace(
        **{
            "reasoning_tags": LMMS_EVAL_REASONING_TAGS,
            "process_with_media": False,
            "agentic_trace_mode": "basic",
            **resolved,
            "model_args": model_args,
            "output_path": str(out_dir),
        }
    )
    tasks = str(resolved.get("tasks") or ",".join(sorted(responses))).split(",")
    limit = run_config.get("limit")
    tracker = EvaluationTracker(output_path=str(out_dir))
    when = utils.get_datetime_str(
        timezone=resolved.get("timezone") or "Asia/Singapore"
    )  # as the CLI names files
    results = evaluator.simple_evaluate(
        model=_replay_model(responses),
        model_args=model_args,
        tasks=tasks,
        task_manager=TaskManager("WARNING"),
        limit=None if limit in (None, -1) else limit,
        log_samples=True,
        evaluation_tracker=tracker,
        cli_args=cli_args,
        datetime_str=when,
    )
    if results is None:
        raise RuntimeError(f"lmms-eval returned no results for lr={lr}")
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
