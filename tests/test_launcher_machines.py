"""``vreason run`` over several machines: accelerate's machine flags, and only machine 0 keeps the books.

The real two-machine run is tests/test_multinode_e2e.py (slow); here the launch commands and what
each machine does with the shared output root, with a runner that records instead of running.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from lmms_vreason.experiments.configs import CONFIG_COPY_NAME, config_from_mapping, load_configs
from lmms_vreason.experiments.launcher import GRID_RUNS, LaunchOptions, build_plan, main, run_configs

ROOT = Path(__file__).resolve().parents[1]


def _config(name: str, **model_args):
    args = {"pretrained": "Qwen/Qwen2.5-VL-7B-Instruct", "vreason": True, **model_args}
    return config_from_mapping({"name": name, "reproduces": "test", "model_args": args, "tasks": ["mmvu"]})


def _machines(tmp_path: Path, rank: int, **kw) -> LaunchOptions:
    return LaunchOptions(
        output_root=tmp_path / "runs",
        num_processes=16,
        num_machines=2,
        machine_rank=rank,
        main_process_ip="gpu-a01",
        main_process_port=29500,
        **kw,
    )


class Recorder:
    """A runner that records (command, log) and returns a fixed exit code, writing nothing."""

    def __init__(self, rc: int = 0) -> None:
        self.rc = rc
        self.calls: list[tuple[tuple[str, ...], Path]] = []

    def __call__(self, command: Sequence[str], log_path: Path, env: Mapping[str, str]) -> int:
        self.calls.append((tuple(command), log_path))
        return self.rc


def test_accelerate_gets_the_machine_flags_before_the_module(tmp_path: Path) -> None:
    plan = build_plan(_config("a"), _machines(tmp_path, 1))
    assert plan.command[: plan.command.index("-m")] == (
        "accelerate",
        "launch",
        "--num_processes",
        "16",
        "--num_machines",
        "2",
        "--machine_rank",
        "1",
        "--main_process_ip",
        "gpu-a01",
        "--multi_gpu",
        "--main_process_port",
        "29500",
    )
    one = build_plan(_config("a"), LaunchOptions(output_root=tmp_path, num_processes=8))
    assert "--num_machines" not in one.command and "--machine_rank" not in one.command


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_machines": 2, "machine_rank": 2, "main_process_ip": "h"}, "machine_rank"),
        ({"num_machines": 2, "machine_rank": 0}, "main_process_ip"),
        ({"num_machines": 2, "main_process_ip": "h", "launcher": "plain"}, "accelerate launcher"),
        ({"num_machines": 4, "main_process_ip": "h", "num_processes": 2}, "total over all machines"),
    ],
)
def test_impossible_machine_settings_fail_naming_the_setting(
    tmp_path: Path, kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        LaunchOptions(output_root=tmp_path, **{"num_processes": 8, **kwargs})


def test_a_sharded_model_is_refused_over_several_machines_before_anything_runs(
    tmp_path: Path, capsys
) -> None:
    with pytest.raises(ValueError, match="device_map.*single-node"):
        build_plan(_config("big", device_map="auto"), _machines(tmp_path, 0))
    argv = [str(ROOT / "model_configs" / "t2-72b-base.yaml"), "--output-root", str(tmp_path / "runs")]
    argv += ["--num-machines", "2", "--main-process-ip", "h", "--num-processes", "16"]
    assert main(argv, runner=Recorder()) == 2
    assert "t2-72b-base shards its model" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_other_machines_launch_their_share_and_leave_the_books_to_machine_0(tmp_path: Path) -> None:
    runner = Recorder()
    [outcome] = run_configs([_config("a")], _machines(tmp_path, 1), runner=runner)
    assert outcome.status == "done"  # by the exit code: machine 0 writes the results, maybe later
    [(command, log)] = runner.calls
    assert "--machine_rank" in command and command[command.index("--machine_rank") + 1] == "1"
    assert log == (tmp_path / "runs" / ".machine1" / "a.log").absolute()
    assert not (tmp_path / "runs" / "a" / CONFIG_COPY_NAME).exists()  # machine 0 writes the copy
    [failed] = run_configs([_config("a")], _machines(tmp_path, 1), runner=Recorder(rc=3))
    assert failed.status == "failed" and "exit code 3 on machine 1" in failed.reason


def test_machine_0_judges_by_the_files_so_a_run_that_wrote_nothing_failed(tmp_path: Path) -> None:
    runner = Recorder()
    [outcome] = run_configs([_config("a")], _machines(tmp_path, 0), runner=runner)
    assert outcome.status == "failed" and "missing results" in outcome.reason
    assert (tmp_path / "runs" / "a" / CONFIG_COPY_NAME).is_file()
    assert runner.calls[0][1] == (tmp_path / "runs" / "a" / "lmms_eval.log").absolute()


def test_an_lr_grid_on_another_machine_neither_clears_scores_nor_fans_out(tmp_path: Path) -> None:
    configs = load_configs([str(ROOT / "model_configs" / "t1-7b-32f128-vreason.yaml")])
    grid_dir = tmp_path / "runs" / GRID_RUNS / "t1-7b-32f128-vreason"
    grid_dir.mkdir(parents=True)
    (grid_dir / "vreason_lr_grid_rank1.jsonl").write_text("{}\n")  # machine 1's file of this pass
    runner = Recorder()
    outcomes = run_configs(configs, _machines(tmp_path, 1), runner=runner)
    assert [o.status for o in outcomes] == ["done"] * 10
    [(command, _)] = runner.calls  # the one-pass lmms-eval run only: no grid-score on this machine
    assert "lmms_eval" in command and "lmms_vreason.lmms.grid_score" not in command
    assert (grid_dir / "vreason_lr_grid_rank1.jsonl").is_file()  # nothing cleared
    assert not any((tmp_path / "runs" / c.name).exists() for c in configs)  # no fan-out


def test_cli_takes_the_machine_flags_and_defaults_processes_to_gpus_times_machines(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    config = ROOT / "model_configs" / "t1-7b-32f128-base.yaml"
    argv = [str(config), "--output-root", str(tmp_path / "runs"), "--dry-run", "--num-machines", "3"]
    argv += ["--machine-rank", "2", "--main-process-ip", "10.0.0.1", "--accelerate-bin", "accelerate"]
    assert main(argv, runner=Recorder()) == 0
    out = capsys.readouterr().out
    assert (
        "accelerate launch --num_processes 12 --num_machines 3 --machine_rank 2 --main_process_ip 10.0.0.1"
        in out
    )
