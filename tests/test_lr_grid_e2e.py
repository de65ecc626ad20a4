"""An lr grid config run in one pass (``vreason run``, real lmms-eval on the tiny model) equals the same
grid run as separate single-lr runs: per-lr results, per-doc responses and collation."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from lmms_vreason.benchmarks import DATA_ROOT_ENV
from lmms_vreason.experiments.collate import main as collate
from lmms_vreason.experiments.launcher import GRID_RUNS
from lmms_vreason.experiments.launcher import main as run
from lmms_vreason.testing.fixtures import make_fixture_bench

pytestmark = pytest.mark.slow

GRID = (0.02, 0.1)
MEMBERS = ("g-lr2e-2", "g-lr1e-1")
LIMIT = 3


def _results(folder: Path) -> dict:
    [path] = sorted(folder.rglob("*_results.json"))
    return json.loads(path.read_text())


def _samples(folder: Path) -> dict[int, dict]:
    [path] = sorted(folder.rglob("*_samples_mmvu.jsonl"))
    return {row["doc_id"]: row for row in map(json.loads, path.read_text().splitlines())}


def test_one_pass_grid_equals_separate_runs(tmp_path, tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setenv(DATA_ROOT_ENV, str(make_fixture_bench(tmp_path / "data")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = {
        "name": "g",
        "reproduces": "test: one-pass lr grid",
        "model_args": {
            "pretrained": str(tiny_model_dir),
            "dtype": "float32",
            "nframes": 8,
            "max_pixels": 32 * 28 * 28,
            "min_pixels": 4 * 28 * 28,
            "step_size": 2,
            "vreason": True,
        },
        "tasks": ["mmvu"],
        "gen_kwargs": {"do_sample": False, "temperature": 0, "max_new_tokens": 8},
        "lr_grid": list(GRID),
    }
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(config))
    common = [
        str(tmp_path / "g.yaml"),
        "--launcher",
        "plain",
        "--limit",
        str(LIMIT),
        "--include-path",
        "none",
    ]
    one_pass, separate = tmp_path / "one_pass", tmp_path / "separate"
    assert run([*common, "--output-root", str(one_pass), "--", "--device", "cpu"]) == 0
    assert "running one pass for 2 lrs" in capsys.readouterr().out
    assert (
        run([*common, "--output-root", str(separate), "--grid-mode", "separate", "--", "--device", "cpu"])
        == 0
    )
    assert "running one pass" not in capsys.readouterr().out
    assert (one_pass / GRID_RUNS / "g").is_dir() and not (separate / GRID_RUNS).exists()
    for name, lr in zip(MEMBERS, GRID, strict=True):
        mine, theirs = _results(one_pass / name), _results(separate / name)
        for key in ("accuracy,none", "parse_failure_rate,none", "media_error_rate,none"):
            assert mine["results"]["mmvu"][key] == theirs["results"]["mmvu"][key]
        assert f"lr={lr!r}" in mine["config"]["model_args"] and "lr_grid" not in mine["config"]["model_args"]
        got, want = _samples(one_pass / name), _samples(separate / name)
        assert sorted(got) == sorted(want) == list(range(LIMIT))
        for doc_id, row in want.items():
            assert got[doc_id]["filtered_resps"] == row["filtered_resps"]
            assert got[doc_id]["accuracy"] == row["accuracy"]
    tables = []
    for root in (one_pass, separate):
        assert collate([str(root), "--format", "csv"]) == 0
        tables.append(list(csv.DictReader(io.StringIO(capsys.readouterr().out))))
    assert tables[0] == tables[1] and [r["row"] for r in tables[0]] == ["g"]
