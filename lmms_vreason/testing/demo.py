"""Offline demo: build the tiny model and the fixture benchmark, run the Table 1 group through lmms-eval.

Runs where no weights or datasets can be downloaded (CI, laptops): a random-weight Qwen2.5-VL built
locally (``vreason tiny``) and a synthetic benchmark in the Video-R1 record format,
through the real command line: ``lmms-eval --model qwen2_5_vl_vreason --tasks vreason_bench``.
lmms-eval exits 0 even when a run fails, so this script checks the files it writes and exits
non-zero when the results are missing.

Usage: ``vreason demo [--out runs/demo] [--limit 2] [--max-new-tokens 48] [--lite] [--device cpu]``
(the README's quickstart).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from lmms_vreason.analysis.runs import read_results
from lmms_vreason.benchmarks import AVG_METRIC, AVG_WO_MRA_METRIC, DATA_ROOT_ENV, GROUP_TASK
from lmms_vreason.cli import HelpFormatter, prog
from lmms_vreason.telemetry import TELEMETRY_GLOB
from lmms_vreason.testing.fixtures import make_fixture_bench
from lmms_vreason.testing.tiny import TinySpec, build_tiny_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog("demo"), description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="folder for model, data and results"
    )
    parser.add_argument("--limit", type=int, default=2, help="items per task (lmms-eval --limit)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="generation budget per item")
    parser.add_argument("--lite", action="store_true", help="V-Reason (Lite) instead of full V-Reason")
    parser.add_argument("--device", default="cpu", help="torch device of the model (cpu, cuda, cuda:N)")
    args = parser.parse_args(argv)

    model_dir = build_tiny_model(args.out / "tiny-qwen2.5-vl", TinySpec(vocab="small"))
    data_dir = make_fixture_bench(args.out / "eval-data")
    output = args.out / "results"
    model_args = (
        f"pretrained={model_dir},device={args.device},dtype=float32,max_frames=8,max_pixels={32 * 28 * 28},"
        f"min_pixels={4 * 28 * 28},vreason=true,step_size=4,lite={str(args.lite).lower()},telemetry=true"
    )
    cmd = [
        sys.executable,
        "-m",
        "lmms_eval",
        "--model",
        "qwen2_5_vl_vreason",
        "--model_args",
        model_args,
        "--tasks",
        GROUP_TASK,
        "--limit",
        str(args.limit),
        "--gen_kwargs",
        f"max_new_tokens={args.max_new_tokens}",
        "--output_path",
        str(output),
        "--log_samples",
    ]
    print("$", " ".join(cmd), flush=True)
    env = {**os.environ, DATA_ROOT_ENV: str(data_dir.resolve()), "HF_HUB_OFFLINE": "1"}
    subprocess.run(cmd, check=True, env=env)

    results = read_results(output)
    if not results:
        print(f"demo FAILED: lmms-eval wrote no results under {output}", file=sys.stderr)
        return 1
    newest = results[-1]
    avg, _ = newest.metric(GROUP_TASK, AVG_METRIC)
    avg_wo, _ = newest.metric(GROUP_TASK, AVG_WO_MRA_METRIC)
    if avg is None or avg_wo is None:
        group = sorted(newest.results.get(GROUP_TASK, {}))
        print(f"demo FAILED: {newest.path} has no {GROUP_TASK} averages: {group}", file=sys.stderr)
        return 1
    telemetry = sorted(output.rglob(TELEMETRY_GLOB))
    rows = sum(1 for f in telemetry for line in f.read_text().splitlines() if line.strip())
    print(
        f"demo OK: {GROUP_TASK} avg={avg:.1f} avg_wo_mra={avg_wo:.1f} (random weights: no parsable answers expected)"
    )
    print(f"results: {newest.path}  telemetry rows: {rows}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
