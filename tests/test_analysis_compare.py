"""Paired run comparison and the regression gate, on run directories in lmms-eval's layout.

Layout (lmms_eval/loggers/evaluation_tracker.py): ``<output_path>/<model_name_sanitized>/
<date_id>_results.json`` and ``<date_id>_samples_<task>.jsonl``; each samples line holds
``doc_id`` and the per-doc values ``process_results`` returned, under their metric names.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps

from lmms_vreason.analysis.compare import compare_runs, format_comparison, gate_failures
from lmms_vreason.analysis.runs import RunInputError, open_run

MODEL_DIR = "Qwen__Qwen2.5-VL-7B-Instruct"
DATE = "20250101_120000"


def write_run(
    root: Path, tasks: dict[str, dict[int, Any]], metric: str = "accuracy", date_id: str = DATE
) -> Path:
    """A fake run: per task, doc_id -> the value stored under ``metric`` in the samples file."""
    model = root / MODEL_DIR
    model.mkdir(parents=True, exist_ok=True)
    results = {"results": {t: {"alias": t, f"{metric},none": 0.0} for t in tasks}, "date": date_id}
    (model / f"{date_id}_results.json").write_text(json.dumps(results))
    for task, scores in tasks.items():
        with (model / f"{date_id}_samples_{task}.jsonl").open("w") as fh:
            for doc_id, value in scores.items():
                line = {"doc_id": doc_id, "target": "A", "filtered_resps": "A", "doc_hash": f"h{doc_id}"}
                fh.write(json.dumps({**line, metric: value, "input": "prompt"}) + "\n")
    return root


def binary(n: int, wrong: set[int], scale: float = 1.0) -> dict[int, float]:
    return {i: 0.0 if i in wrong else scale for i in range(n)}


def loop_bootstrap(diff: np.ndarray, n: int, level: float, seed: int) -> tuple[float, float]:
    """Direct implementation: resample docs with replacement, percentile interval of the mean."""
    rng = np.random.default_rng(seed)
    means = [diff[rng.integers(0, diff.size, diff.size)].mean() for _ in range(n)]
    tail = 100 * (1 - level) / 2
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def test_binary_comparison_matches_scipy_and_direct_bootstrap(tmp_path: Path) -> None:
    # 50 docs. A wrong on 40-49; B wrong on 0-7 and 40-46 -> 8 docs A-right/B-wrong,
    # 3 docs A-wrong/B-right (47-49). Δ = (3 - 8) / 50 = -10 points.
    a = write_run(tmp_path / "a", {"mmvu": binary(50, set(range(40, 50)))})
    b = write_run(tmp_path / "b", {"mmvu": binary(50, set(range(8)) | set(range(40, 47)))})
    (row,) = compare_runs(a, b, n_resamples=2000, level=0.9, seed=5)
    assert (row.task, row.metric, row.n_docs) == ("mmvu", "accuracy", 50)
    assert (row.score_a, row.score_b, row.delta) == pytest.approx((80.0, 70.0, -10.0))
    assert row.discordant == (8, 3)
    assert row.test == "mcnemar exact binomial"
    assert row.p_value == pytest.approx(sps.binomtest(8, 11, 0.5).pvalue)
    diff = np.array([0.0] * 50)
    diff[:8], diff[47:] = -1.0, 1.0
    low, high = loop_bootstrap(diff, 2000, 0.9, seed=5)
    assert (row.ci_low, row.ci_high) == pytest.approx((100 * low, 100 * high))


def test_percent_scale_and_dict_values_are_normalised(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", {"mmvu": binary(20, {0, 1}, scale=100.0)})  # 0/100 accuracy
    b = write_run(tmp_path / "b", {"mmvu": {i: {"score": v} for i, v in binary(20, {0}).items()}})
    (row,) = compare_runs(a, b, n_resamples=200)
    assert (row.score_a, row.score_b, row.delta) == pytest.approx((90.0, 95.0, 5.0))
    assert row.discordant == (0, 1)


def test_graded_scores_use_exact_sign_flip(tmp_path: Path) -> None:
    # MRA in percent on 10 docs; B is higher on three docs by 10, 20, 30 points.
    # Sign flips of (0.1, 0.2, 0.3): only +++ and --- reach |sum| >= 0.6 -> p = 2/8.
    mra_a = {i: 50.0 for i in range(10)}
    mra_b = {**mra_a, 0: 60.0, 1: 70.0, 2: 80.0}
    a = write_run(tmp_path / "a", {"vreason_vsibench_mra": mra_a}, metric="mra")
    b = write_run(tmp_path / "b", {"vreason_vsibench_mra": mra_b}, metric="mra")
    (row,) = compare_runs(a, b, n_resamples=500)
    assert row.metric == "mra" and row.discordant is None
    assert row.test == "sign-flip exact"
    assert row.p_value == pytest.approx(0.25)
    assert (row.score_a, row.score_b, row.delta) == pytest.approx((50.0, 56.0, 6.0))


def test_doc_mismatch_lists_the_difference(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", {"mmvu": binary(5, set())})
    b = write_run(tmp_path / "b", {"mmvu": {0: 1, 1: 1, 2: 1, 3: 1, 7: 1}})
    with pytest.raises(RunInputError, match=r"only in A .*\[4\]; only in B .*\[7\]"):
        compare_runs(a, b)


def test_task_mismatch_and_missing_run_are_refused(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", {"mmvu": binary(5, set()), "vreason_mvbench": binary(5, set())})
    b = write_run(tmp_path / "b", {"mmvu": binary(5, set())})
    with pytest.raises(RunInputError, match=r"different tasks.*vreason_mvbench"):
        compare_runs(a, b)
    (row,) = compare_runs(a, b, tasks=["mmvu"], n_resamples=100)
    assert row.delta == 0.0
    with pytest.raises(RunInputError, match="not found"):
        compare_runs(a, tmp_path / "missing")


def test_latest_samples_file_wins(tmp_path: Path) -> None:
    run = write_run(tmp_path / "r", {"mmvu": binary(4, {0})}, date_id="20250101_120000")
    write_run(tmp_path / "r", {"mmvu": binary(4, set())}, date_id="20250202_080000")
    assert open_run(run).samples["mmvu"].name == "20250202_080000_samples_mmvu.jsonl"


def test_reads_files_written_by_lmms_eval_tracker(tmp_path: Path) -> None:
    """The real writer's layout and sample fields, not a re-creation of them."""
    from lmms_eval.loggers.evaluation_tracker import EvaluationTracker

    def run(path: Path, wrong: set[int]) -> Path:
        tracker = EvaluationTracker(output_path=str(path))
        tracker.general_config_tracker.log_experiment_args(
            model_source="qwen2_5_vl_vreason",
            model_args="pretrained=Qwen/Qwen2.5-VL-7B-Instruct,telemetry=True",
            system_instruction=None,
            chat_template=None,
            fewshot_as_multiturn=False,
        )
        samples = [
            {"doc_id": i, "doc": {"problem": "q"}, "target": "A", "arguments": ["prompt", {}],
             "resps": [["<answer>A</answer>"]], "filtered_resps": ["A"], "token_counts": [None],
             "doc_hash": f"h{i}", "accuracy": 0.0 if i in wrong else 1.0}
            for i in range(12)
        ]  # fmt: skip
        tracker.save_results_aggregated(
            results={"results": {"mmvu": {}}}, samples={"mmvu": samples}, datetime_str=DATE
        )
        tracker.save_results_samples(task_name="mmvu", samples=samples)
        return path

    (row,) = compare_runs(run(tmp_path / "a", set()), run(tmp_path / "b", {3, 4, 5}), n_resamples=100)
    assert (row.n_docs, row.delta, row.discordant) == (12, pytest.approx(-25.0), (3, 0))


def test_gate_rule_needs_both_margin_and_significance(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", {"mmvu": binary(100, set()), "vreason_mvbench": binary(100, set())})
    # mmvu: -20 points, p ~ 2e-6 -> regression. mvbench: -2 points but p = 0.5 -> not significant.
    b = write_run(
        tmp_path / "b", {"mmvu": binary(100, set(range(20))), "vreason_mvbench": binary(100, {0, 1})}
    )
    rows = compare_runs(a, b, n_resamples=200)
    assert [r.task for r in gate_failures(rows, margin=1.0, alpha=0.05)] == ["mmvu"]
    assert gate_failures(rows, margin=25.0, alpha=0.05) == []
    table = format_comparison(rows, "base", "cand", margin=1.0, alpha=0.05)
    assert table.count("REGRESSION") == 1 and "| MMVU (mc) | mmvu |" in table


def _gate(a: Path, b: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "lmms_vreason.cli", "compare", str(a), str(b), "--gate", *extra]
    return subprocess.run(cmd + ["--n-boot", "500"], capture_output=True, text=True, timeout=120)


def test_gate_cli_fails_on_regression(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", {"mmvu": binary(100, set())})
    b = write_run(tmp_path / "b", {"mmvu": binary(100, set(range(20)))})
    proc = _gate(a, b, "--margin", "1.0", "--alpha", "0.05")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "REGRESSION" in proc.stdout and "GATE FAILED" in proc.stdout
    assert "-20.0" in proc.stdout


def test_gate_cli_passes_without_change(tmp_path: Path) -> None:
    scores = {"mmvu": binary(100, set(range(0, 100, 7)))}
    proc = _gate(write_run(tmp_path / "a", scores), write_run(tmp_path / "b", scores))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "GATE PASSED" in proc.stdout and "| ok |" in proc.stdout


def test_gate_cli_bad_input_is_exit_2(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", {"mmvu": binary(3, set())})
    b = write_run(tmp_path / "b", {"mmvu": {0: 1, 1: 1, 5: 1}})
    proc = _gate(a, b)
    assert proc.returncode == 2
    assert "only in A" in proc.stderr and "[2]" in proc.stderr
