"""A one-pass lr grid through the lmms-eval command line, scored per lr, equals separate runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmms_vreason.benchmarks import DATA_ROOT_ENV
from lmms_vreason.core.settings import lr_label
from lmms_vreason.testing.fixtures import make_fixture_bench

pytestmark = pytest.mark.slow

GRID = (0.02, 0.1)
LIMIT = 3


def _run(out: Path, model_dir: Path, data: Path, extra: str) -> None:
    args = (
        f"pretrained={model_dir},device=cpu,dtype=float32,nframes=8,max_pixels={32 * 28 * 28},"
        f"min_pixels={4 * 28 * 28},step_size=2,{extra}"
    )
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "qwen2_5_vl_vreason", "--model_args", args]
    cmd += [
        "--tasks",
        "mmvu",
        "--limit",
        str(LIMIT),
        "--gen_kwargs",
        "do_sample=false,temperature=0,max_new_tokens=8",
    ]
    cmd += ["--output_path", str(out), "--log_samples"]
    env = {**os.environ, DATA_ROOT_ENV: str(data), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert sorted(out.rglob("*_results.json")), (proc.stdout + proc.stderr)[-3000:]


def _results(folder: Path) -> dict:
    [path] = sorted(p for p in folder.rglob("*_results.json") if "lr_grid" not in p.relative_to(folder).parts)
    return json.loads(path.read_text())


def _samples(folder: Path) -> dict[int, dict]:
    [path] = sorted(folder.rglob("*_samples_mmvu.jsonl"))
    return {row["doc_id"]: row for row in map(json.loads, path.read_text().splitlines())}


def test_grid_run_scored_per_lr_equals_separate_runs(tmp_path, tiny_model_dir):
    data = make_fixture_bench(tmp_path / "data")
    grid_dir = tmp_path / "grid"
    _run(grid_dir, tiny_model_dir, data, f"lr_grid={':'.join(map(str, GRID))}")
    env = {**os.environ, DATA_ROOT_ENV: str(data), "HF_HUB_OFFLINE": "1"}
    scored = subprocess.run(
        [sys.executable, "-m", "lmms_vreason.lmms.grid_score", str(grid_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert "| lr |" in scored.stdout and lr_label(GRID[1]) in scored.stdout
    for lr in GRID:
        single_dir = tmp_path / f"single-{lr}"
        _run(single_dir, tiny_model_dir, data, f"lr={lr}")
        per_lr = grid_dir / "lr_grid" / f"lr{lr_label(lr)}"
        mine, theirs = _results(per_lr), _results(single_dir)
        for key in ("accuracy,none", "parse_failure_rate,none", "media_error_rate,none"):
            assert mine["results"]["mmvu"][key] == theirs["results"]["mmvu"][key]
        assert f"lr={lr!r}" in mine["config"]["model_args"] and "lr_grid" not in mine["config"]["model_args"]
        assert mine["config"]["limit"] == theirs["config"]["limit"] == LIMIT
        got, want = _samples(per_lr), _samples(single_dir)
        assert sorted(got) == sorted(want) == list(range(LIMIT))
        for doc_id, row in want.items():
            assert got[doc_id]["filtered_resps"] == row["filtered_resps"]
            assert got[doc_id]["accuracy"] == row["accuracy"]
    # lmms-eval's own results of the grid run are the first lr's
    assert (
        _results(grid_dir)["results"]["mmvu"]["accuracy,none"]
        == _results(tmp_path / f"single-{GRID[0]}")["results"]["mmvu"]["accuracy,none"]
    )
