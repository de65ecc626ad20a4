"""End to end through the ``lmms-eval`` CLI on the fixture benchmark.

lmms-eval exits 0 even when a run fails, so these tests read the files it writes. The backend run
uses the tiny random-weight model (``conftest.tiny_model_dir``), so its answers are noise: the checks
are on the pipeline (every sample scored, the averages formed as Table 1 defines them, the missing
video reported as a media error while the run finishes), not on accuracy.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from lmms_vreason.tasks import utils

from lmms_vreason.benchmarks import (
    AVG_METRIC,
    AVG_WO_MRA_METRIC,
    DATA_ROOT_ENV,
    GROUP_TASK,
    MEDIA_ERROR_METRIC,
    MEDIA_ERROR_PREFIX,
    TABLE1_COLUMNS,
)
from lmms_vreason.lmms.task_registry import task_dir
from lmms_vreason.testing import fixtures

pytestmark = pytest.mark.slow


def make_fixture_bench(out_dir: Path, missing_video: bool) -> Path:
    return fixtures.make_fixture_bench(out_dir, seed=0, missing_video=missing_video)


def run_lmms_eval(args: list[str], data_root: Path, out: Path) -> tuple[dict, dict[str, list[dict]]]:
    """Run the CLI; return its results JSON and its logged samples by task."""
    env = {**os.environ, DATA_ROOT_ENV: str(data_root), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [sys.executable, "-m", "lmms_eval", *args, "--output_path", str(out), "--log_samples"]
    done = subprocess.run(command, env=env, cwd=out.parent, capture_output=True, text=True, timeout=900)
    found = sorted(out.rglob("*_results.json"))
    assert found, (
        f"lmms-eval wrote no results (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    samples = {}
    for path in out.rglob("*_samples_*.jsonl"):
        task = path.stem.split("_samples_", 1)[1]
        samples[task] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return json.loads(found[-1].read_text(encoding="utf-8")), samples


def records(root: Path, eval_file: str) -> list[dict]:
    return json.loads((root / eval_file).read_text(encoding="utf-8"))


def in_task(task: str, row: dict) -> bool:
    """Whether a record of the task's eval file is one of the task's docs (VSI-Bench is split)."""
    if task == "vreason_vsibench_mc":
        return row["problem_type"] != "regression"
    if task == "vreason_vsibench_mra":
        return row["problem_type"] == "regression"
    return True


def test_backend_runs_the_group_and_reports_the_missing_video(tmp_path: Path, tiny_model_dir: Path) -> None:
    bench = make_fixture_bench(tmp_path / "bench", missing_video=True)
    model_args = (
        f"pretrained={tiny_model_dir},device=cpu,dtype=float32,max_frames=4,max_pixels=12544,min_pixels=3136"
    )
    results, samples = run_lmms_eval(
        ["--model", "qwen2_5_vl_vreason", "--model_args", model_args, "--tasks", GROUP_TASK]
        + ["--gen_kwargs", "max_new_tokens=8"],  # no --include_path: the plugin registers the tasks
        bench,
        tmp_path / "out",
    )
    scores = results["results"]
    per_task = [scores[column.task][f"{column.metric},none"] for column in TABLE1_COLUMNS]
    assert scores[GROUP_TASK][f"{AVG_METRIC},none"] == pytest.approx(statistics.fmean(per_task))
    wo_mra = [s for s, column in zip(per_task, TABLE1_COLUMNS, strict=True) if column.in_avg_wo_mra]
    assert scores[GROUP_TASK][f"{AVG_WO_MRA_METRIC},none"] == pytest.approx(statistics.fmean(wo_mra))

    total = 0
    for column in TABLE1_COLUMNS:
        rows = [row for row in records(bench, column.eval_file) if in_task(column.task, row)]
        logged = sorted(samples[column.task], key=lambda sample: sample["doc_id"])
        assert len(logged) == len(rows)
        for sample, row in zip(logged, rows, strict=True):  # every sample scored from its own response
            score = utils.score_response(sample["filtered_resps"], row["problem_type"], row["solution"])
            assert sample[column.metric] == pytest.approx(score.value)
        total += len(rows)

    mmvu = samples["mmvu"]
    failed = [s for s in mmvu if s["filtered_resps"].startswith(MEDIA_ERROR_PREFIX)]
    assert len(failed) == 1 and "missing.mp4" in failed[0]["filtered_resps"]
    assert failed[0]["accuracy"] == 0.0 and failed[0][MEDIA_ERROR_METRIC] == 100.0
    assert scores["mmvu"][f"{MEDIA_ERROR_METRIC},none"] == pytest.approx(100 / len(mmvu))
    assert scores[GROUP_TASK][f"{MEDIA_ERROR_METRIC},none"] == pytest.approx(100 / total)


def test_include_path_runs_with_lmms_eval_dummy_model(tmp_path: Path) -> None:
    bench = make_fixture_bench(tmp_path / "bench", missing_video=False)
    results, samples = run_lmms_eval(
        ["--model", "dummy", "--model_args", "response=<answer>A</answer>"]
        + ["--tasks", f"mmvu,{GROUP_TASK},vreason_videommmu_lenient"]
        + ["--include_path", str(task_dir())],
        bench,
        tmp_path / "out",
    )
    rows = records(bench, "eval_mmvu.json")
    expected = statistics.fmean(100.0 if utils.doc_to_target(row) == "A" else 0.0 for row in rows)
    assert results["results"]["mmvu"]["accuracy,none"] == pytest.approx(expected)
    lenient = [
        utils.process_results_lenient(row, ["<answer>A</answer>"])["accuracy"]
        for row in records(bench, "eval_videommmu.json")
    ]
    assert results["results"]["vreason_videommmu_lenient"]["accuracy,none"] == pytest.approx(
        statistics.fmean(lenient)
    )
    assert samples["mmvu"][0]["input"] == utils.build_prompt(
        rows[0]["problem"], "multiple choice", rows[0]["options"]
    )
