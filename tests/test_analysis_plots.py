"""Figures from fixture telemetry: files are produced, PNGs decode and are not blank, PDFs are PDFs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from lmms_vreason.analysis import plots
from lmms_vreason.analysis.runs import RunInputError, load_traces

FIXTURES = Path(__file__).parent / "fixtures" / "analysis"
MODEL_DIR = "Qwen__Qwen2.5-VL-7B-Instruct"  # lmms-eval's sanitize_model_name("Qwen/Qwen2.5-VL-7B-Instruct")


def make_run(root: Path, fixture: str, ranks: int = 1) -> Path:
    """An lmms-eval --output_path with a results file and the fixture's telemetry split over ranks."""
    (root / MODEL_DIR).mkdir(parents=True)
    (root / MODEL_DIR / "20250101_120000_results.json").write_text(json.dumps({"results": {}}))
    lines = (FIXTURES / fixture).read_text().splitlines()
    for rank in range(ranks):
        part = lines[rank::ranks]
        (root / f"vreason_telemetry_rank{rank}.jsonl").write_text("\n".join(part) + "\n")
    return root


def assert_figure(paths: list[Path], name: str) -> None:
    png, pdf = (p for p in paths if p.stem == name)
    assert png.suffix == ".png" and pdf.suffix == ".pdf"
    assert png.stat().st_size > 5_000 and pdf.stat().st_size > 1_000
    image = imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert np.ptp(image[..., :3]) > 0.5  # something drawn, not a blank canvas
    assert pdf.read_bytes().startswith(b"%PDF")


@pytest.fixture()
def runs(tmp_path: Path) -> dict[str, list]:
    base = make_run(tmp_path / "base", "telemetry_baseline.jsonl")
    vreason = make_run(tmp_path / "vreason", "telemetry_vreason.jsonl", ranks=2)
    return {"baseline": load_traces(base), "vreason": load_traces(vreason)}


def test_load_traces_merges_ranks_and_keeps_error_rows(runs: dict[str, list]) -> None:
    assert len(runs["vreason"]) == 3
    assert len(runs["baseline"]) == 4
    assert sum(t.error is not None for t in runs["baseline"]) == 1


def test_mean_entropy_plot(runs: dict[str, list], tmp_path: Path) -> None:
    assert_figure(plots.plot_mean_entropy(runs, tmp_path / "out"), "entropy_mean")


def test_sample_alpha_plot_recorded_and_derived(runs: dict[str, list], tmp_path: Path) -> None:
    assert_figure(plots.plot_sample_alpha(runs["vreason"][0], tmp_path / "o", name="v"), "v")
    assert_figure(plots.plot_sample_alpha(runs["baseline"][0], tmp_path / "o", name="b"), "b")


def test_alpha_histogram_plot(runs: dict[str, list], tmp_path: Path) -> None:
    assert_figure(plots.plot_alpha_histogram(runs, tmp_path / "out"), "alpha_histogram")


def test_output_tokens_plot(runs: dict[str, list], tmp_path: Path) -> None:
    assert_figure(plots.plot_output_tokens(runs, tmp_path / "out"), "output_tokens")


def test_load_traces_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(RunInputError, match="not found"):
        load_traces(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunInputError, match="no telemetry"):
        load_traces(tmp_path / "empty")
    # A parent of several runs (as run_configs.py lays them out) is refused, not mixed.
    make_run(tmp_path / "runs" / "base", "telemetry_baseline.jsonl")
    make_run(tmp_path / "runs" / "vreason", "telemetry_vreason.jsonl")
    with pytest.raises(RunInputError, match="several runs"):
        load_traces(tmp_path / "runs")


def test_plot_traces_cli(tmp_path: Path) -> None:
    base = make_run(tmp_path / "base", "telemetry_baseline.jsonl")
    vreason = make_run(tmp_path / "vreason", "telemetry_vreason.jsonl")
    out = tmp_path / "figs"
    cmd = [sys.executable, "-m", "lmms_vreason.cli", "plot", str(base), str(vreason)]
    cmd += ["--labels", "Qwen2.5-VL", "V-Reason", "--out", str(out), "--sample", "mmvu:1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = [
        "entropy_mean",
        "alpha_histogram",
        "output_tokens",
        "sample_alpha_0_Qwen2.5-VL",
        "sample_alpha_1_V-Reason",
    ]
    for name in names:
        assert_figure([out / f"{name}.png", out / f"{name}.pdf"], name)


def test_plot_traces_cli_reports_missing_telemetry(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    cmd = [
        sys.executable,
        "-m",
        "lmms_vreason.cli",
        "plot",
        str(tmp_path / "run"),
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no telemetry" in proc.stderr
