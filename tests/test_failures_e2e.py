"""Start-up checks and data-parallel runs through the real command line (lmms-eval exits 0 on failure,
so every assertion is on its output and the files it writes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmms_vreason.benchmarks import DATA_ROOT_ENV
from lmms_vreason.telemetry import read_traces
from lmms_vreason.testing.fixtures import make_fixture_bench

pytestmark = pytest.mark.slow

GREEDY = "do_sample=false,temperature=0,max_new_tokens=6"


@pytest.fixture(scope="module")
def fixture_data(tmp_path_factory) -> Path:
    return make_fixture_bench(tmp_path_factory.mktemp("fixture"))


def _model_args(model_dir: Path) -> str:
    return (
        f"pretrained={model_dir},device=cpu,dtype=float32,nframes=8,"
        f"max_pixels={32 * 28 * 28},min_pixels={4 * 28 * 28},step_size=2,telemetry=true"
    )


def _lmms_eval_args(model_dir: Path, out: Path, limit: int) -> list[str]:
    return [
        "-m",
        "lmms_eval",
        "--model",
        "qwen2_5_vl_vreason",
        "--model_args",
        _model_args(model_dir),
        "--tasks",
        "mmvu",
        "--limit",
        str(limit),
        "--gen_kwargs",
        GREEDY,
        "--output_path",
        str(out),
        "--log_samples",
    ]


def _env(data: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, DATA_ROOT_ENV: str(data), "HF_HUB_OFFLINE": "1", **extra}


def _samples(out: Path) -> dict[int, str]:
    [path] = sorted(out.rglob("*_samples_mmvu.jsonl"))
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["doc_id"]: row["filtered_resps"] for row in rows}


def test_unwritable_output_path_stops_the_run_before_generation(tmp_path, tiny_model_dir, fixture_data):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = subprocess.run(
        [sys.executable, *_lmms_eval_args(tiny_model_dir, blocker / "out", limit=2)],
        env=_env(fixture_data),
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = proc.stdout + proc.stderr
    assert "is not writable" in log and str(blocker / "out") in log, log[-3000:]
    assert "Decoding" not in log  # the backend's progress bar never started


def test_two_processes_on_cpu_equal_one_and_write_one_telemetry_file_per_rank(
    tmp_path, tiny_model_dir, fixture_data
):
    """``accelerate launch`` with 2 CPU processes: the model sits on accelerate's device (not
    ``cuda:{rank}``), every rank writes its own telemetry file, and answers equal a 1-process run."""
    single, double = tmp_path / "one", tmp_path / "two"
    limit = 4
    subprocess.run(
        [sys.executable, *_lmms_eval_args(tiny_model_dir, single, limit)],
        env=_env(fixture_data),
        capture_output=True,
        text=True,
        timeout=600,
    )
    accelerate = Path(sys.executable).parent / "accelerate"
    launch = [
        str(accelerate),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--main_process_port",
        "29561",
    ]
    proc = subprocess.run(
        [*launch, *_lmms_eval_args(tiny_model_dir, double, limit)],
        # accelerate reports the two CPU processes as MULTI_CPU only with this set: the branch that
        # used to pick cuda:{rank}.
        env=_env(fixture_data, ACCELERATE_USE_CPU="true"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert sorted(double.rglob("*_results.json")), (proc.stdout + proc.stderr)[-3000:]
    one, two = _samples(single), _samples(double)
    assert sorted(one) == sorted(two) == list(range(limit))
    assert one == two
    files = sorted(p.name for p in double.glob("vreason_telemetry_rank*.jsonl"))
    assert files == ["vreason_telemetry_rank0.jsonl", "vreason_telemetry_rank1.jsonl"]
    by_rank = {rank: list(read_traces(double / f"vreason_telemetry_rank{rank}.jsonl")) for rank in (0, 1)}
    assert {t.rank for t in by_rank[0]} == {0} and {t.rank for t in by_rank[1]} == {1}
    traces_two = {t.doc_id: t for rows in by_rank.values() for t in rows}
    traces_one = {t.doc_id: t for t in read_traces(single)}
    assert sorted(traces_two) == sorted(traces_one) == list(range(limit))
    for doc_id, trace in traces_one.items():
        assert traces_two[doc_id].output_tokens == trace.output_tokens
        assert traces_two[doc_id].entropy == pytest.approx(trace.entropy, abs=1e-5)
