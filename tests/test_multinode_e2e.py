"""Data parallel across machines, proven on one: two ``vreason run`` processes on 127.0.0.1, each a
"machine" (accelerate ``--num_machines 2 --machine_rank R``, one CPU process each, gloo), run one
lmms-eval evaluation together, exactly as the SLURM template runs one per node.

Against an independent reference, plain ``python -m lmms_eval`` in one process: every document is
answered exactly once (none lost, none twice), with the same answer and per-sample scores; each
rank writes its own telemetry and run-info file; lmms-eval's results are the same numbers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lmms_vreason.analysis.runs import open_run, read_results
from lmms_vreason.benchmarks import DATA_ROOT_ENV
from lmms_vreason.provenance import read_run_info
from lmms_vreason.telemetry import read_traces
from lmms_vreason.testing.fixtures import make_fixture_bench

pytestmark = pytest.mark.slow

TASKS = ("mmvu", "vreason_mvbench")  # 4 and 3 docs in the fixture: one task splits unevenly over 2 ranks
GEN = {"do_sample": False, "temperature": 0, "max_new_tokens": 6}


def _model_args(model_dir: Path) -> dict:
    return {
        "pretrained": str(model_dir),
        "device": "cpu",
        "dtype": "float32",
        "nframes": 8,
        "max_pixels": 32 * 28 * 28,
        "min_pixels": 4 * 28 * 28,
        "step_size": 2,
        "telemetry": True,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wrapper(path: Path, module: str) -> str:
    """An executable running ``python -m module`` of this interpreter (a venv may lack the script)."""
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m {module} "$@"\n')
    path.chmod(0o755)
    return str(path)


def _samples(run: Path) -> dict[str, list[dict]]:
    """Every samples row of every task, in file order (duplicates kept: they must be seen)."""
    files = open_run(run).samples
    return {
        task: [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for task, path in files.items()
    }


def _metrics(run: Path) -> dict[str, dict[str, object]]:
    [results] = read_results(run)
    return {task: {k: v for k, v in entry.items() if k != "alias"} for task, entry in results.results.items()}


@pytest.fixture(scope="module")
def fixture_data(tmp_path_factory) -> Path:
    return make_fixture_bench(tmp_path_factory.mktemp("fixture"))


def test_two_machines_answer_every_document_once_and_equal_one_process(
    tmp_path: Path, tiny_model_dir: Path, fixture_data: Path
) -> None:
    env = {
        **os.environ,
        DATA_ROOT_ENV: str(fixture_data),
        "HF_HUB_OFFLINE": "1",
        "ACCELERATE_USE_CPU": "true",  # accelerate's CPU data parallel (MULTI_CPU, gloo)
        "OMP_NUM_THREADS": "1",
    }
    model_args = _model_args(tiny_model_dir)

    # the reference: one process, lmms-eval's own command line
    single = tmp_path / "single"
    reference = subprocess.run(
        [
            sys.executable,
            "-m",
            "lmms_eval",
            "--model",
            "qwen2_5_vl_vreason",
            "--model_args",
            ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in model_args.items()),
            "--tasks",
            ",".join(TASKS),
            "--gen_kwargs",
            ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in GEN.items()),
            "--output_path",
            str(single),
            "--log_samples",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert read_results(single), (reference.stdout + reference.stderr)[-3000:]

    # two "machines": the same `vreason run` on each, as scripts/slurm/multinode.sbatch runs it
    config = tmp_path / "dp2.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "dp2",
                "reproduces": "test: data parallel over two machines",
                "model": "qwen2_5_vl_vreason",
                "model_args": {k: v for k, v in model_args.items() if k != "device"},
                "tasks": list(TASKS),
                "gen_kwargs": GEN,
            }
        )
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    accelerate = _wrapper(bin_dir / "accelerate", "accelerate.commands.accelerate_cli")
    root = tmp_path / "runs"
    port = _free_port()
    machines = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lmms_vreason.cli",
                "run",
                str(config),
                "--output-root",
                str(root),
                "--accelerate-bin",
                accelerate,
                "--num-machines",
                "2",
                "--machine-rank",
                str(rank),
                "--main-process-ip",
                "127.0.0.1",
                "--main-process-port",
                str(port),
                "--num-processes",
                "2",
                "--",
                "--device",
                "cpu",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    try:
        outputs = [machine.communicate(timeout=900)[0] for machine in machines]
    finally:
        for machine in machines:
            if machine.poll() is None:
                machine.kill()
    logs = [(root / "dp2" / "lmms_eval.log"), (root / ".machine1" / "dp2.log")]
    detail = "\n".join(outputs) + "\n".join(p.read_text()[-3000:] for p in logs if p.is_file())
    assert [machine.returncode for machine in machines] == [0, 0], detail
    assert "dp2 ... done" in outputs[0] and "machine 0 writes the results" in outputs[1], detail
    double = root / "dp2"

    one, two = _samples(single), _samples(double)
    assert sorted(one) == sorted(two) == sorted(TASKS)
    for task in TASKS:
        ids_one = [row["doc_id"] for row in one[task]]
        ids_two = [row["doc_id"] for row in two[task]]
        assert sorted(ids_two) == sorted(ids_one) == list(range(len(ids_one))), (task, ids_two)  # once each
        by_doc = {row["doc_id"]: row for row in one[task]}
        for row in two[task]:
            ref = by_doc[row["doc_id"]]
            assert row["filtered_resps"] == ref["filtered_resps"], (task, row["doc_id"])
            assert row["target"] == ref["target"] and row["accuracy"] == ref["accuracy"]
    assert _metrics(double) == _metrics(single)

    # one telemetry file per rank; every (task, doc) on exactly one rank, none idle. lmms-eval pads a
    # rank with fewer requests of a task with a copy of its last one (``__padding_only__``, dropped
    # from the samples): the backend decodes it, so that rank's file repeats one doc, identically.
    files = sorted(p.name for p in double.glob("vreason_telemetry_rank*.jsonl"))
    assert files == ["vreason_telemetry_rank0.jsonl", "vreason_telemetry_rank1.jsonl"]
    reference_traces = {(t.task, t.doc_id): t for t in read_traces(single)}
    owner: dict[tuple[str, int], int] = {}
    for rank in (0, 1):
        rows = list(read_traces(double / f"vreason_telemetry_rank{rank}.jsonl"))
        assert rows and {t.rank for t in rows} == {rank}
        for task in TASKS:
            docs = [t.doc_id for t in rows if t.task == task]
            assert len(docs) - len(set(docs)) <= 1, (rank, task, docs)  # at most the one padding copy
        for trace in rows:
            key = (trace.task, trace.doc_id)
            assert owner.setdefault(key, rank) == rank, f"{key} decoded on both ranks"
            assert trace.output_tokens == reference_traces[key].output_tokens
            assert trace.entropy == pytest.approx(reference_traces[key].entropy, abs=1e-5)
    assert sorted(owner) == sorted(reference_traces)
    assert sorted(owner) == sorted((task, row["doc_id"]) for task in TASKS for row in one[task])

    # each process recorded where it ran, once
    info = read_run_info(double)
    assert sorted((row["rank"], row["world_size"]) for row in info) == [(0, 2), (1, 2)]
