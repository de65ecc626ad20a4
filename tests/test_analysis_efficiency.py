"""Efficiency report numbers from hand-made traces, with the expected values worked out by hand."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from lmms_vreason.analysis.efficiency import build_report, summarize, to_csv, to_markdown
from lmms_vreason.analysis.runs import RunInputError
from lmms_vreason.analysis.tables import format_change
from lmms_vreason.telemetry import SampleTrace, TelemetryWriter

GIB = 1024**3
MC, MRA, MMVU = "vreason_vsibench_mc", "vreason_vsibench_mra", "mmvu"


def row(
    task: str,
    doc: int,
    out: int,
    prefill: float,
    decode: float,
    mem_gib: float | None,
    error: str | None = None,
):
    mem = None if mem_gib is None else int(mem_gib * GIB)
    return SampleTrace(task=task, doc_id=doc, output_tokens=out, prefill_s=prefill, decode_s=decode,
                       peak_mem_bytes=mem, error=error)  # fmt: skip


# Baseline. MMVU: tokens (100+300)/2 = 200, seconds (1+3 + 1+5)/2 = 5, memory (16+18)/2 = 17.
# VSI-Bench (mc and mra tasks together): tokens (50+150)/2 = 100, seconds (2+4)/2 = 3, memory 21.
# The media-error row is excluded. Average: tokens 150, seconds 4, memory 19.
BASE = [
    row(MMVU, 0, 100, 1.0, 3.0, 16),
    row(MMVU, 1, 300, 1.0, 5.0, 18),
    row(MC, 0, 50, 0.5, 1.5, 20),
    row(MRA, 0, 150, 0.5, 3.5, 22),
    row(MC, 1, 0, 0.0, 0.0, None, error="[vreason media error] x.mp4"),
]
# Lite. MMVU: tokens 100, seconds 2.5, memory 13. VSI-Bench: tokens 80, seconds 1.5, memory 16.
# Average: tokens 90, seconds 2, memory 14.5.
LITE = [
    row(MMVU, 0, 50, 1.0, 1.0, 12),
    row(MMVU, 1, 150, 1.0, 2.0, 14),
    row(MC, 0, 60, 0.5, 0.5, 15),
    row(MRA, 0, 100, 0.5, 1.5, 17),
]


def test_summarize_groups_vsi_tasks_and_skips_errors() -> None:
    costs = summarize(BASE)
    assert set(costs) == {"VSI-Bench", "MMVU (mc)"}
    vsi = costs["VSI-Bench"]
    assert (vsi.n, vsi.errors) == (2, 1)
    assert vsi.output_tokens == pytest.approx(100.0)
    assert vsi.seconds == pytest.approx(3.0)
    assert vsi.peak_mem_gib == pytest.approx(21.0)
    mmvu = costs["MMVU (mc)"]
    assert (mmvu.output_tokens, mmvu.seconds, mmvu.peak_mem_gib) == pytest.approx((200.0, 5.0, 17.0))


def test_report_cells_averages_and_changes() -> None:
    report = build_report([("base", BASE), ("lite", LITE)])
    assert report.columns == ("VSI-Bench", "MMVU (mc)", "Average")
    assert report.value(0, "output_tokens", "Average") == pytest.approx(150.0)
    assert report.value(1, "output_tokens", "Average") == pytest.approx(90.0)
    assert report.value(0, "seconds", "Average") == pytest.approx(4.0)
    assert report.value(1, "peak_mem_gib", "Average") == pytest.approx(14.5)
    assert report.change(1, "output_tokens", "VSI-Bench") == pytest.approx(-20.0)
    assert report.change(1, "output_tokens", "Average") == pytest.approx(-40.0)
    assert report.change(1, "seconds", "MMVU (mc)") == pytest.approx(-50.0)
    assert report.change(1, "peak_mem_gib", "Average") == pytest.approx((14.5 - 19) / 19 * 100)


def test_markdown_has_paper_layout() -> None:
    text = to_markdown(build_report([("base", BASE), ("lite", LITE)]))
    assert "| Run | VSI-Bench | MMVU (mc) | Average |" in text
    assert "| base | 100.0 | 200.0 | 150.0 |" in text
    assert "| lite | 80.0 [↓20.0%] | 100.0 [↓50.0%] | 90.0 [↓40.0%] |" in text
    assert "| lite | 1.50 [↓50.0%] | 2.50 [↓50.0%] | 2.00 [↓50.0%] |" in text
    # memory: 16/21 -> -23.8 %, 13/17 -> -23.5 %, 14.5/19 -> -23.7 %
    assert "| lite | 16.00 [↓23.8%] | 13.00 [↓23.5%] | 14.50 [↓23.7%] |" in text
    assert "| base | 2 (1 failed) | 2 |" in text


def test_csv_long_format() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(build_report([("base", BASE), ("lite", LITE)])))))
    assert len(rows) == 3 * 2 * 3  # metrics x runs x columns
    cell = next(r for r in rows if (r["metric"], r["run"], r["benchmark"]) == ("seconds", "lite", "Average"))
    assert float(cell["value"]) == pytest.approx(2.0)
    assert float(cell["baseline"]) == pytest.approx(4.0)
    assert float(cell["ratio"]) == pytest.approx(0.5)
    assert float(cell["change_pct"]) == pytest.approx(-50.0)
    assert cell["n_samples"] == "4"


def test_missing_memory_is_na() -> None:
    runs = [("a", [row(MMVU, 0, 10, 1.0, 1.0, None)]), ("b", [row(MMVU, 0, 20, 1.0, 1.0, None)])]
    text = to_markdown(build_report(runs))
    assert "| b | n/a | n/a |" in text
    assert "| b | 20.0 [↑100.0%] | 20.0 [↑100.0%] |" in text


def test_format_change() -> None:
    assert format_change(-46.64) == "[↓46.6%]"
    assert format_change(21.0) == "[↑21.0%]"
    assert format_change(0.01) == "[=0.0%]"
    assert format_change(None) == ""


def test_mismatched_benchmarks_are_refused() -> None:
    with pytest.raises(RunInputError, match="different benchmarks"):
        build_report([("base", BASE), ("lite", LITE[:2])])


def _write_run(root: Path, traces: list[SampleTrace]) -> Path:
    writer = TelemetryWriter(root, rank=0)
    for trace in traces:
        writer.write(trace)
    return root


def test_cli_writes_markdown_and_csv(tmp_path: Path) -> None:
    base, lite = _write_run(tmp_path / "base", BASE), _write_run(tmp_path / "lite", LITE)
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "lmms_vreason.cli", "efficiency", "--baseline", str(base), str(lite)]
    proc = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| lite | 80.0 [↓20.0%] | 100.0 [↓50.0%] | 90.0 [↓40.0%] |" in proc.stdout
    assert (out / "efficiency.md").read_text(encoding="utf-8") == proc.stdout.rstrip("\n") + "\n"
    rows = list(csv.DictReader(io.StringIO((out / "efficiency.csv").read_text(encoding="utf-8"))))
    assert {r["run"] for r in rows} == {"base", "lite"}


def test_cli_errors_on_missing_run(tmp_path: Path) -> None:
    base = _write_run(tmp_path / "base", BASE)
    cmd = [sys.executable, "-m", "lmms_vreason.cli", "efficiency", "--baseline", str(base)]
    proc = subprocess.run(cmd + [str(tmp_path / "missing")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "run directory not found" in proc.stderr
