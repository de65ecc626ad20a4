"""The collation tool rebuilds Table 1 (Avg, Avg wo mra, gains, paper numbers) from result folders.

Result folders are hand-made in lmms-eval's real layout: ``<root>/<config>/<org__model>/
<date>_results.json`` with ``results[task]["<metric>,none"]`` in percent, plus the launcher's
config copy. The expected averages below are computed by hand from the paper's own rows.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from lmms_vreason.benchmarks import TABLE1_COLUMNS
from lmms_vreason.experiments.collate import main, make_table, read_runs
from lmms_vreason.experiments.configs import CONFIG_COPY_NAME

KEYS = [c.key for c in TABLE1_COLUMNS]  # vsi_acc, vsi_mra, videommmu, mmvu, mvbench, tempcompass, videomme
ALL_TASKS = [c.task for c in TABLE1_COLUMNS]

# Table 1, Qwen2.5-VL-7B family at 32 frames / 128 px: (VSI Acc, VSI MRA, VideoMMMU, MMVU, MVBench,
# TempCompass, VideoMME), then the paper's Avg and Avg (wo mra).
BASE = [33.8, 22.3, 45.8, 61.3, 60.7, 72.4, 53.7]
LITE = [37.3, 23.7, 47.4, 65.0, 60.6, 72.4, 53.5]
VIDEO_R1 = [30.9, 39.2, 48.8, 64.0, 64.1, 73.3, 58.7]
PAPER_AVGS = {"base": (50.0, 54.6), "lite": (51.4, 56.0), "r1": (54.1, 56.6)}


def results_json(
    numbers: dict[str, float], *, model_args: str, limit: float | None = None, extra=None
) -> dict:
    """A results file shaped like lmms-eval 0.7.3's (``evaluator.simple_evaluate`` + tracker)."""
    results = {}
    for column in TABLE1_COLUMNS:
        if column.key in numbers:
            results[column.task] = {
                "alias": column.task,
                f"{column.metric},none": numbers[column.key],
                f"{column.metric}_stderr,none": 1.5,
                "parse_failure_rate,none": 0.0,
            }
    results.update(extra or {})
    return {
        "results": results,
        "group_subtasks": {task: [] for task in results},
        "configs": {task: {"task": task} for task in results},
        "versions": {task: 1.0 for task in results},
        "n-shot": {task: 0 for task in results},
        "higher_is_better": {task: {"accuracy": True} for task in results},
        "n-samples": {task: {"original": 100, "effective": 100} for task in results},
        "config": {
            "model": "qwen2_5_vl_vreason",
            "model_args": model_args,
            "batch_size": "1",
            "limit": limit,
            "gen_kwargs": {},
            "random_seed": 0,
        },
        "git_hash": None,
        "date": "20250101_000000",
        "task_hashes": {},
        "model_name": "Qwen/Qwen2.5-VL-7B-Instruct",
        "model_name_sanitized": "Qwen__Qwen2.5-VL-7B-Instruct",
    }


def make_run(
    root: Path,
    name: str,
    values: list[float] | dict[str, float],
    *,
    paper: dict[str, float] | None = None,
    lr: float | None = None,
    group: str | None = None,
    baseline: str | None = None,
    with_config_copy: bool = True,
    date: str = "20250101_120000",
    limit: float | None = None,
    extra=None,
) -> Path:
    numbers = dict(zip(KEYS, values, strict=True)) if isinstance(values, list) else values
    model_args = {"pretrained": "Qwen/Qwen2.5-VL-7B-Instruct", "max_frames": 32, "max_pixels": 128 * 28 * 28}
    model_args.update({"vreason": lr is not None, **({"lr": lr, "lite": True} if lr is not None else {})})
    run_dir = root / name
    out = run_dir / "Qwen__Qwen2.5-VL-7B-Instruct"
    out.mkdir(parents=True, exist_ok=True)
    arg_string = ",".join(f"{k}={v}" for k, v in model_args.items())
    (out / f"{date}_results.json").write_text(
        json.dumps(results_json(numbers, model_args=arg_string, limit=limit, extra=extra), indent=2)
    )
    (out / f"{date}_samples_mmvu.jsonl").write_text("")
    if with_config_copy:
        config = {"name": name, "reproduces": f"Table 1 test row {name}", "paper": paper or {}}
        config.update({"model": "qwen2_5_vl_vreason", "model_args": model_args, "tasks": ALL_TASKS})
        if group:
            config["lr_grid_group"] = group
        if baseline:
            config["baseline"] = baseline
        (run_dir / CONFIG_COPY_NAME).write_text(yaml.safe_dump(config, sort_keys=False))
    return run_dir


def paper_block(values: list[float], avgs: tuple[float, float]) -> dict[str, float]:
    return {**dict(zip(KEYS, values, strict=True)), "avg": avgs[0], "avg_wo_mra": avgs[1]}


def csv_rows(text: str) -> dict[str, dict[str, str]]:
    return {row["row"]: row for row in csv.DictReader(io.StringIO(text))}


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def test_reproduces_table1_averages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A group metric lmms-eval may or may not write must be ignored: a wrong one is planted here.
    bogus_group = {"vreason_bench": {"alias": "vreason_bench", "avg,none": 99.0, "avg_wo_mra,none": 99.0}}
    make_run(tmp_path, "qwen-7b", BASE, paper=paper_block(BASE, PAPER_AVGS["base"]), extra=bogus_group)
    make_run(tmp_path, "vreason-lite", LITE, paper=paper_block(LITE, PAPER_AVGS["lite"]), lr=3e-4)
    make_run(tmp_path, "video-r1", VIDEO_R1, paper=paper_block(VIDEO_R1, PAPER_AVGS["r1"]))

    rows = csv_rows(run_cli([str(tmp_path), "--baseline", "qwen-7b", "--format", "csv"], capsys))
    # Hand computation: (33.8+22.3+45.8+61.3+60.7+72.4+53.7)/7 = 350.0/7 = 50.0;
    # without MRA (33.8+45.8+61.3+60.7+72.4+53.7)/6 = 327.7/6 = 54.62.
    assert float(rows["qwen-7b"]["avg"]) == pytest.approx(50.0, abs=1e-9)
    assert float(rows["qwen-7b"]["avg_wo_mra"]) == pytest.approx(327.7 / 6, abs=1e-3)
    # (37.3+23.7+47.4+65.0+60.6+72.4+53.5)/7 = 359.9/7 = 51.41; (37.3+47.4+65.0+60.6+72.4+53.5)/6 = 56.03.
    assert float(rows["vreason-lite"]["avg"]) == pytest.approx(359.9 / 7, abs=1e-3)
    assert float(rows["vreason-lite"]["avg_wo_mra"]) == pytest.approx(336.2 / 6, abs=1e-3)
    # Video-R1: 379.0/7 = 54.14 and 339.8/6 = 56.63.
    assert float(rows["video-r1"]["avg"]) == pytest.approx(379.0 / 7, abs=1e-3)
    assert float(rows["video-r1"]["avg_wo_mra"]) == pytest.approx(339.8 / 6, abs=1e-3)
    for name, (avg, wo) in (
        ("qwen-7b", (50.0, 54.6)),
        ("vreason-lite", (51.4, 56.0)),
        ("video-r1", (54.1, 56.6)),
    ):
        assert round(float(rows[name]["avg"]), 1) == avg  # the paper's printed Avg column
        assert round(float(rows[name]["avg_wo_mra"]), 1) == wo  # and Avg (wo mra)
        assert float(rows[name]["avg_paper"]) == avg
    assert float(rows["vreason-lite"]["mmvu_gain"]) == pytest.approx(3.7, abs=1e-6)
    assert float(rows["vreason-lite"]["avg_gain"]) == pytest.approx(359.9 / 7 - 50.0, abs=1e-3)
    assert float(rows["vreason-lite"]["vsi_acc_stderr"]) == 1.5
    assert rows["qwen-7b"]["mmvu_gain"] == ""

    md = run_cli([str(tmp_path), "--baseline", "qwen-7b"], capsys)
    lines = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert "Avg (wo mra)" in lines["Model"] and "VSI-Bench MRA" in lines["Model"]
    assert "| 50.0 (50.0) | 54.6 (54.6) |" in lines["qwen-7b (baseline)"]
    assert "65.0 [+3.7] (65.0 [+3.7])" in lines["vreason-lite"]
    assert "| 51.4 [+1.4] (51.4 [+1.4]) | 56.0 [+1.4] (56.0 [+1.4]) |" in lines["vreason-lite"]
    assert "60.6 [-0.1] (60.6 [-0.1])" in lines["vreason-lite"]
    assert md.index("qwen-7b (baseline)") < md.index("video-r1")  # baseline row first


def test_missing_benchmark_leaves_averages_blank(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    partial = dict(zip(KEYS, BASE, strict=True))
    del partial["vsi_mra"]  # Avg needs all 7; Avg (wo mra) does not need MRA
    make_run(tmp_path, "no-mra", partial)
    make_run(tmp_path, "mmvu-only", {"mmvu": 62.1})
    rows = csv_rows(run_cli([str(tmp_path), "--format", "csv"], capsys))
    assert rows["no-mra"]["avg"] == "" and float(rows["no-mra"]["avg_wo_mra"]) == pytest.approx(
        327.7 / 6, 1e-6
    )
    assert rows["mmvu-only"]["avg"] == rows["mmvu-only"]["avg_wo_mra"] == ""
    assert float(rows["mmvu-only"]["mmvu"]) == 62.1


def test_best_over_lr_grid_is_chosen_per_benchmark(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paper = paper_block(LITE, PAPER_AVGS["lite"])
    base = [30.0, 20.0, 40.0, 60.0, 60.0, 70.0, 50.0]
    grid = {
        1e-4: [36.0, 30.0, 46.0, 64.0, 61.0, 70.0, 52.0],  # best VSI mean (33.0), best MVBench
        3e-4: [38.0, 20.0, 47.0, 65.0, 60.0, 72.0, 53.0],  # best VSI Acc alone (mean 29.0)
        5e-4: [30.0, 31.0, 45.0, 63.0, 59.0, 73.0, 54.0],  # best VSI MRA alone (mean 30.5)
    }
    make_run(tmp_path, "base", base)
    for lr, values in grid.items():
        make_run(tmp_path, f"lite-lr{lr:g}", values, paper=paper, lr=lr, group="lite", baseline="base")

    rows = csv_rows(run_cli([str(tmp_path), "--format", "csv"], capsys))
    assert set(rows) == {"base", "lite"}  # members collapsed into one grid row
    best = rows["lite"]
    assert best["kind"] == "lr_grid" and best["n_lrs"] == "3" and best["baseline"] == "base"
    chosen = [float(best[k]) for k in KEYS]
    # VSI Acc and MRA come together from lr 1e-4 (best mean), each other column from its own best lr.
    assert chosen == [36.0, 30.0, 47.0, 65.0, 61.0, 73.0, 54.0]
    assert float(best["avg"]) == pytest.approx(sum(chosen) / 7)
    wo_mra = [v for k, v in zip(KEYS, chosen, strict=True) if k != "vsi_mra"]
    assert float(best["avg_wo_mra"]) == pytest.approx(sum(wo_mra) / 6)
    assert "vsi_acc=1e-4;vsi_mra=1e-4;" in best["selected_lr"] and "mvbench=1e-4" in best["selected_lr"]
    assert "mmvu=3e-4" in best["selected_lr"] and "videomme=5e-4" in best["selected_lr"]
    assert float(best["mmvu_gain"]) == pytest.approx(5.0)  # vs the configs' own baseline: 65 - 60

    md = run_cli([str(tmp_path), "--show-grid-members"], capsys)
    assert "lite (best over lr grid, 3 lrs)" in md and "| lite-lr0.0003 |" in md
    assert "best lr per benchmark" in md


def test_newest_results_win_and_limit_is_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_run(tmp_path, "rerun", BASE, date="20250101_000000")
    make_run(tmp_path, "rerun", {"mmvu": 70.0}, date="20250202_000000", limit=5.0)
    (run,) = read_runs(tmp_path)
    assert run.values["mmvu"] == 70.0 and run.values["videomme"] == 53.7 and run.limit == 5.0
    md = run_cli([str(tmp_path)], capsys)
    assert "limit=5" in md and "not a full evaluation" in md
    # A full rerun of the limited task clears the flag.
    make_run(tmp_path, "rerun", {"mmvu": 61.3}, date="20250303_000000")
    (run,) = read_runs(tmp_path)
    assert run.values["mmvu"] == 61.3 and run.limit is None


def test_configs_option_for_folders_without_config_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "runs"
    make_run(root, "t1-7b-32f128-base", BASE, with_config_copy=False)
    shipped = Path(__file__).resolve().parent.parent / "model_configs" / "t1-7b-32f128-base.yaml"
    rows = csv_rows(run_cli([str(root), "--format", "csv", "--configs", str(shipped)], capsys))
    assert float(rows["t1-7b-32f128-base"]["mmvu_paper"]) == 61.3
    assert rows["t1-7b-32f128-base"]["frames_px"] == "32/128"


def test_unknown_baseline_and_empty_root_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 1
    make_run(tmp_path, "a", BASE)
    assert main([str(tmp_path), "--baseline", "nope"]) == 2
    assert "baseline 'nope'" in capsys.readouterr().err
    with pytest.raises(KeyError):
        make_table(read_runs(tmp_path), baseline="nope")
