"""The GPU-figures command: its table from known numbers, its refusal without a GPU, and (slow) a full
run of the small shape on the CPU."""

from __future__ import annotations

import json

import pytest

from lmms_vreason.bench.gpu_figures import GIB, main, markdown

ROW = {
    "base_ms_per_token": 20.0,
    "generate_ms_per_token": 25.0,
    "vreason_k4_ms_per_token": 20.8,
    "vreason_k1_ms_per_token": 28.0,
    "lite_k4_ms_per_token": 19.0,
    "base_peak_mem_bytes": 10 * GIB,
    "vreason_k4_peak_mem_bytes": int(10.1 * GIB),
    "vreason_peak_mem_bytes": int(10.3 * GIB),
    "lite_peak_mem_bytes": int(9.5 * GIB),
    "grid_G10_ratio": 2.5,
    "grid_G10_peak_mem_bytes": 12 * GIB,
}


def test_table_shows_tokens_per_second_ratios_memory_and_goals() -> None:
    figures = {
        "date": "2026-11-30",
        "device": "NVIDIA H200",
        "model": "m",
        "dtype": "bfloat16",
        "attention": "sdpa",
        "video_tokens": 2048,
        "new_tokens": 128,
        "batches": {"1": ROW, "8": {**ROW, "base_ms_per_token": 40.0}},
        "goals": {
            "k4": {"what": "V-Reason k=4 / plain loop, per token", "value": 1.04, "limit": 1.05, "met": True}
        },
        "e2e": {"ok": True, "seconds": 12.3, "device": "cuda"},
    }
    text = markdown(figures)
    assert "2026-11-30, NVIDIA H200" in text
    # batch 1: 1000 / 20 ms = 50 tokens/s; V-Reason k=4: 20.8 / 20 = 1.040, memory +1.00 %
    assert "| 1 | plain loop | 20.00 | 50.0 | 1.000 | 10.00 | +0.00% |" in text
    assert "| 1 | V-Reason k=4 | 20.80 | 48.1 | 1.040 | 10.10 | +1.00% |" in text
    # batch 8: 8 * 1000 / 40 ms = 200 tokens/s
    assert "| 8 | plain loop | 40.00 | 200.0 | 1.000 |" in text
    assert "| 10 lrs | 2.50 | 12.00 |" in text
    assert "| V-Reason k=4 / plain loop, per token | 1.0400 | 1.05 | yes |" in text
    assert "ok in 12.3 s" in text


def test_refuses_the_7b_shape_without_a_gpu(capsys) -> None:
    assert main(["--device", "cpu"]) == 2
    assert "need a GPU" in capsys.readouterr().err


@pytest.mark.slow
def test_small_shape_runs_every_figure_on_cpu(tmp_path) -> None:
    assert (
        main(["--small", "--device", "cpu", "--out", str(tmp_path), "--batches", "1,2", "--grids", "4"]) == 0
    )
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert set(figures["batches"]) == {"1", "2"}
    one = figures["batches"]["1"]
    for key in ("base", "generate", "vreason_k4", "vreason_k1", "lite_k4"):
        assert one[f"{key}_ms_per_token"] > 0
    assert one["grid_G4_ratio"] > 0 and "grid_G4_ratio" not in figures["batches"]["2"]
    assert set(figures["goals"]) == {
        "vreason_k4_ratio",
        "vreason_k4_peak_mem_overhead_ratio",
        "plain_over_generate",
    }
    assert figures["e2e"]["ok"] is True
    assert (tmp_path / "figures.md").read_text().count("| 2 |") == 5
