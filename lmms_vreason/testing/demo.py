"""Offline demo: the trained tiny Qwen2.5-VL on held-out fixture clips, base vs V-Reason, through lmms-eval.

Runs where no weights or datasets can be downloaded (CI, laptops): the tiny Qwen2.5-VL trained on
synthetic clips and shipped with the package (``vreason tiny DIR --trained``), and a held-out
fixture benchmark in the Video-R1 record format (``vreason fixtures DIR --seed 0 --count K
--fixed-options``: clips of seed :data:`~lmms_vreason.testing.training.EVAL_SEED`, disjoint from the
training seed), through the real command line, twice: ``lmms-eval --model qwen2_5_vl_vreason
--tasks vreason_bench`` with ``vreason=false`` (base decoding) and with ``vreason=true``. Then it
prints, per task, the accuracy of both runs with the paired-bootstrap interval of their difference
(``vreason compare``), the chance level, the parse-failure rate, the tokens per answer, and where
the entropy plot was written. lmms-eval exits 0 even when a run fails, so this checks the files it
writes and exits non-zero when the results are missing.

Usage: ``vreason demo [--out runs/demo] [--count 8] [--limit N] [--max-new-tokens 64] [--lite]
[--device cpu]`` (the README's quickstart). ``--random`` runs the random-weight tiny model instead
(plumbing only: it answers nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmms_vreason.analysis import stats
from lmms_vreason.analysis.compare import compare_runs
from lmms_vreason.analysis.runs import open_run, read_results
from lmms_vreason.analysis.scores import read_doc_scores
from lmms_vreason.analysis.tables import markdown_table
from lmms_vreason.benchmarks import (
    AVG_METRIC,
    AVG_WO_MRA_METRIC,
    DATA_ROOT_ENV,
    GROUP_TASK,
    PARSE_FAILURE_METRIC,
)
from lmms_vreason.cli import HelpFormatter, prog
from lmms_vreason.telemetry import TELEMETRY_GLOB
from lmms_vreason.testing.fixtures import make_fixture_bench
from lmms_vreason.testing.tiny import TinySpec, build_tiny_model
from lmms_vreason.testing.training import EVAL_SEED, MEDIA_ARGS, write_trained

BACKEND = "qwen2_5_vl_vreason"
_OPTION_LINE = re.compile(r"^\(?[A-Z][.):]", re.MULTILINE)


def model_args(model_dir: Path, *, vreason: bool, lite: bool = False, device: str = "cpu") -> str:
    """The ``--model_args`` of a run of a tiny model: float32, the training's frame and pixel budget."""
    media = ",".join(f"{k}={v}" for k, v in MEDIA_ARGS.items())
    return (
        f"pretrained={model_dir},device={device},dtype=float32,{media},"
        f"vreason={str(vreason).lower()},step_size=4,lite={str(lite).lower()},telemetry=true"
    )


def lmms_eval_command(
    model_dir: Path,
    output: Path,
    *,
    vreason: bool,
    tasks: str = GROUP_TASK,
    lite: bool = False,
    device: str = "cpu",
    limit: int | None = None,
    max_new_tokens: int = 64,
) -> list[str]:
    """One lmms-eval run of a tiny model on the fixture benchmark (samples logged for ``compare``)."""
    cmd = [sys.executable, "-m", "lmms_eval", "--model", BACKEND]
    cmd += ["--model_args", model_args(model_dir, vreason=vreason, lite=lite, device=device)]
    cmd += ["--tasks", tasks, "--gen_kwargs", f"max_new_tokens={max_new_tokens}"]
    cmd += ["--output_path", str(output), "--log_samples"]
    return cmd + (["--limit", str(limit)] if limit is not None else [])


def run_lmms_eval(cmd: Sequence[str], data_dir: Path) -> None:
    """Run one lmms-eval command on the fixture at ``data_dir``, offline."""
    print("$", " ".join(cmd), flush=True)
    env = {**os.environ, DATA_ROOT_ENV: str(data_dir.resolve()), "HF_HUB_OFFLINE": "1"}
    subprocess.run(list(cmd), check=True, env=env)


def samples_rows(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Task -> the rows of its newest samples file (lmms-eval ``--log_samples``) in a run folder."""
    return {
        task: [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for task, path in open_run(run_dir).samples.items()
    }


def chance_level(rows: Sequence[dict[str, Any]]) -> float:
    """Expected accuracy (points) of a uniform guess over the logged prompts: 1/options on multiple
    choice (the option lines of the prompt), 0 on a numerical answer."""
    guesses = []
    for row in rows:
        options = _OPTION_LINE.findall(row["input"].partition("Options:\n")[2])
        guesses.append(1 / len(options) if options else 0.0)
    return 100.0 * sum(guesses) / len(guesses)


def _with_interval(run_dir: Path, task: str, metric: str) -> str:
    """A run's score on a task with its bootstrap interval (docs resampled; the same resampling as
    ``vreason compare``'s paired interval, applied to one run's scores)."""
    scores = np.array(list(read_doc_scores(open_run(run_dir).samples[task], task, metric).scores.values()))
    low, high = stats.paired_bootstrap_ci(scores, n_resamples=10_000, level=0.95, seed=0)
    return f"{100 * scores.mean():.1f} [{100 * low:.0f}, {100 * high:.0f}]"


def summary(base: Path, candidate: Path, label: str) -> str:
    """The side-by-side of two runs per task: accuracies and the paired-bootstrap interval of their
    difference (``vreason compare``), chance, parse failures and tokens per answer of each run."""
    rows = compare_runs(base, candidate)
    results = [read_results(run)[-1] for run in (base, candidate)]
    samples = [samples_rows(run) for run in (base, candidate)]
    header = ["Task", "metric", "n", "chance", "base [95% CI]", f"{label} [95% CI]", "Δ [95% CI]", "p"]
    header += ["parse fail % (base / " + label + ")", "tokens/answer (base / " + label + ")"]
    body = []
    for r in rows:
        chance = "—" if r.metric == "mra" else f"{chance_level(samples[0][r.task]):.1f}"
        parse = [res.metric(r.task, PARSE_FAILURE_METRIC)[0] for res in results]
        tokens = [
            sum(row["token_counts"][0]["output_tokens"] for row in run[r.task]) / len(run[r.task])
            for run in samples
        ]
        body.append(
            [
                r.task,
                r.metric,
                str(r.n_docs),
                chance,
                *(_with_interval(run, r.task, r.metric) for run in (base, candidate)),
                f"{r.delta:+.1f} [{r.ci_low:+.1f}, {r.ci_high:+.1f}]",
                f"{r.p_value:.2g}",
                " / ".join("—" if v is None else f"{v:.1f}" for v in parse),
                " / ".join(f"{v:.1f}" for v in tokens),
            ]
        )
    return markdown_table(header, body, left=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog("demo"), description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="folder for model, data and results"
    )
    parser.add_argument("--count", type=int, default=8, help="fixture records per problem type per benchmark")
    parser.add_argument(
        "--limit", type=int, default=None, help="items per task (lmms-eval --limit; default all)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=64, help="generation budget per item")
    parser.add_argument("--lite", action="store_true", help="V-Reason (Lite) instead of full V-Reason")
    parser.add_argument("--device", default="cpu", help="torch device of the model (cpu, cuda, cuda:N)")
    parser.add_argument(
        "--random", action="store_true", help="the random-weight tiny model instead of the trained one"
    )
    args = parser.parse_args(argv)

    if args.random:
        model_dir = build_tiny_model(args.out / "tiny-qwen2.5-vl", TinySpec(vocab="small"))
    else:
        model_dir = write_trained(args.out / "tiny-trained")
    data_dir = make_fixture_bench(
        args.out / "eval-data", seed=EVAL_SEED, count=args.count, fixed_options=True
    )
    label = "Lite" if args.lite else "V-Reason"
    runs = {False: args.out / "results-base", True: args.out / "results"}
    for vreason, output in runs.items():
        cmd = lmms_eval_command(
            model_dir,
            output,
            vreason=vreason,
            lite=args.lite,
            device=args.device,
            limit=args.limit,
            max_new_tokens=args.max_new_tokens,
        )
        run_lmms_eval(cmd, data_dir)

    for output in runs.values():
        results = read_results(output)
        if not results:
            print(f"demo FAILED: lmms-eval wrote no results under {output}", file=sys.stderr)
            return 1
        avg, _ = results[-1].metric(GROUP_TASK, AVG_METRIC)
        if avg is None:
            group = sorted(results[-1].results.get(GROUP_TASK, {}))
            print(f"demo FAILED: {results[-1].path} has no {GROUP_TASK} averages: {group}", file=sys.stderr)
            return 1
    print()
    print(summary(runs[False], runs[True], label))
    newest = read_results(runs[True])[-1]
    base = read_results(runs[False])[-1]
    avg = [r.metric(GROUP_TASK, AVG_METRIC)[0] for r in (base, newest)]
    avg_wo = [r.metric(GROUP_TASK, AVG_WO_MRA_METRIC)[0] for r in (base, newest)]
    telemetry = sorted(runs[True].rglob(TELEMETRY_GLOB))
    rows = sum(1 for f in telemetry for line in f.read_text().splitlines() if line.strip())
    figures = args.out / "figs"
    from lmms_vreason.analysis.plots import main as plot_main

    with open(os.devnull, "w") as quiet:
        stdout, sys.stdout = sys.stdout, quiet
        try:
            plotted = plot_main([str(runs[True]), "--labels", label, "--out", str(figures)])
        finally:
            sys.stdout = stdout
    entropy = figures / "entropy_mean.png"
    print(
        f"\ndemo OK: {GROUP_TASK} avg base={avg[0]:.1f} {label}={avg[1]:.1f}, "
        f"avg_wo_mra base={avg_wo[0]:.1f} {label}={avg_wo[1]:.1f}"
        + (" (random weights: no parsable answers expected)" if args.random else "")
    )
    print(f"results: {newest.path}  baseline: {base.path}  telemetry rows: {rows}")
    print(f"entropy plot: {entropy}" if plotted == 0 and entropy.exists() else "entropy plot: not written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
