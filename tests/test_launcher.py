"""The launcher builds the right lmms-eval commands and resumes: finished configs are not rerun.

Resume is tested end to end with a fake ``lmms-eval`` executable on PATH that records each call and
writes a results JSON in lmms-eval's real layout (``<output_path>/<org__model>/<date>_results.json``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import sys
from pathlib import Path

import pytest
import yaml

from lmms_vreason.benchmarks import TABLE1_COLUMNS
from lmms_vreason.experiments.collate import main as collate_main
from lmms_vreason.experiments.configs import CONFIG_COPY_NAME, ExperimentConfig, config_from_mapping
from lmms_vreason.experiments.launcher import (
    LaunchOptions,
    build_plan,
    completion_status,
    main,
    run_configs,
)

FAKE_LMMS_EVAL = r'''#!{python}
"""Stand-in for lmms-eval: logs its argv, writes a results JSON unless FAKE_LMMS_FAIL is in the path."""
import argparse, datetime, json, os, pathlib, sys
p = argparse.ArgumentParser()
for flag in ("--model", "--model_args", "--tasks", "--gen_kwargs", "--output_path", "--include_path"):
    p.add_argument(flag)
p.add_argument("--limit")
p.add_argument("--log_samples", action="store_true")
args, _ = p.parse_known_args()
with open(os.environ["FAKE_LMMS_CALLS"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
if os.environ.get("FAKE_LMMS_FAIL") and os.environ["FAKE_LMMS_FAIL"] in args.output_path:
    print("Traceback: simulated failure; lmms-eval still exits 0")
    sys.exit(0)
metric = {metric}
def typed(v):  # what lmms-eval's handle_arg_string records: bools and numbers, not strings
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    return v
gen = {{k: typed(v) for k, v in (kv.split("=", 1) for kv in args.gen_kwargs.split(","))}} if args.gen_kwargs else None
results = {{t: {{"alias": t, metric.get(t, "accuracy") + ",none": 50.0,
                 metric.get(t, "accuracy") + "_stderr,none": 2.0}} for t in args.tasks.split(",")}}
pretrained = dict(kv.split("=", 1) for kv in args.model_args.split(","))["pretrained"]
out = pathlib.Path(args.output_path) / "__".join(pretrained.split("/")[-2:])
out.mkdir(parents=True, exist_ok=True)
stamp = datetime.datetime.now().strftime("%Y%m%d_%H%M%S_%f")
data = {{"results": results, "group_subtasks": {{t: [] for t in results}},
        "config": {{"model": args.model, "model_args": args.model_args, "gen_kwargs": gen,
                    "limit": float(args.limit) if args.limit else None}},
        "n-samples": {{t: {{"original": 10, "effective": 10}} for t in results}}}}
(out / f"{{stamp}}_results.json").write_text(json.dumps(data))
'''

ALL_TASKS = [c.task for c in TABLE1_COLUMNS]


def make_config(name: str, *, tasks=("mmvu",), **model_args) -> ExperimentConfig:
    args = {"pretrained": "Qwen/Qwen2.5-VL-7B-Instruct", "max_frames": 32, "vreason": True, **model_args}
    return config_from_mapping({"name": name, "reproduces": "test", "model_args": args, "tasks": list(tasks)})


@pytest.fixture
def fake_lmms_eval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the fake ``lmms-eval`` first on PATH; returns the file its calls are logged to."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    metric = {c.task: c.metric for c in TABLE1_COLUMNS}
    script = bin_dir / "lmms-eval"
    script.write_text(FAKE_LMMS_EVAL.format(python=sys.executable, metric=repr(metric)))
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    calls = tmp_path / "calls.jsonl"
    calls.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LMMS_CALLS", str(calls))
    monkeypatch.delenv("FAKE_LMMS_FAIL", raising=False)
    return calls


def calls_of(calls: Path) -> list[list[str]]:
    return [json.loads(line) for line in calls.read_text().splitlines() if line.strip()]


def write_config_files(tmp_path: Path, configs: list[dict]) -> Path:
    folder = tmp_path / "configs"
    folder.mkdir(exist_ok=True)
    for data in configs:
        (folder / f"{data['name']}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def config_dict(name: str, **model_args) -> dict:
    args = {"pretrained": "Qwen/Qwen2.5-VL-3B-Instruct", "vreason": True, **model_args}
    return {
        "name": name,
        "reproduces": "test",
        "paper": {"mmvu": 50.0},
        "model_args": args,
        "tasks": ["mmvu"],
    }


def plain_argv(folder: Path, tmp_path: Path) -> list[str]:
    """CLI args running the fake ``lmms-eval`` found on PATH (not this venv's real one)."""
    return [str(folder), "--launcher", "plain", "--lmms-eval-bin", "lmms-eval"] + [
        "--output-root",
        str(tmp_path / "runs"),
        "--include-path",
        "none",
    ]


# ----------------------------------------------------------------------------- commands


def test_plain_command(tmp_path: Path) -> None:
    config = config_from_mapping(
        {
            "name": "t3-x",
            "reproduces": "test",
            "model_args": {"pretrained": "Qwen/Qwen2.5-VL-7B-Instruct", "vreason": True, "lite": True},
            "tasks": ["mmvu"],
            "gen_kwargs": {"temperature": 0.3, "top_p": 0.9, "min_p": 0.1},
        }
    )
    options = LaunchOptions(
        output_root=tmp_path / "runs",
        launcher="plain",
        include_path="/pack/tasks",
        limit=5,
        extra_args=("--verbosity", "DEBUG"),
    )
    plan = build_plan(config, options)
    assert plan.command == (
        "lmms-eval",
        "--model",
        "qwen2_5_vl_vreason",
        "--model_args",
        "pretrained=Qwen/Qwen2.5-VL-7B-Instruct,vreason=true,lite=true",
        "--tasks",
        "mmvu",
        "--gen_kwargs",
        "temperature=0.3,top_p=0.9,min_p=0.1",
        "--output_path",
        str((tmp_path / "runs" / "t3-x").absolute()),
        "--log_samples",
        "--include_path",
        "/pack/tasks",
        "--limit",
        "5",
        "--verbosity",
        "DEBUG",
    )


def test_extra_args_may_not_contradict_the_config(tmp_path: Path) -> None:
    for extra in (("--tasks", "mmvu"), ("--gen_kwargs=temperature=1",), ("--limit", "3")):
        with pytest.raises(ValueError, match=extra[0].split("=")[0]):
            LaunchOptions(output_root=tmp_path, extra_args=extra)


def test_accelerate_command_and_model_parallel_runs_one_process(tmp_path: Path) -> None:
    options = LaunchOptions(
        output_root=tmp_path, launcher="accelerate", num_processes=4, main_process_port=29511
    )
    plan = build_plan(make_config("a", tasks=ALL_TASKS), options)
    assert plan.command[:9] == (
        "accelerate",
        "launch",
        "--num_processes",
        "4",
        "--multi_gpu",
        "--main_process_port",
        "29511",
        "-m",
        "lmms_eval",
    )
    assert plan.command[plan.command.index("--tasks") + 1] == ",".join(ALL_TASKS)
    assert "--gen_kwargs" not in plan.command and "--log_samples" in plan.command
    sharded = build_plan(make_config("big", device_map="auto"), options)
    assert sharded.command[2:4] == ("--num_processes", "1") and sharded.num_processes == 1


def test_dry_run_prints_commands_and_runs_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_config_files(tmp_path, [config_dict("c1"), config_dict("c2", lr=1.0e-4)])

    def no_runner(*_args: object) -> int:
        raise AssertionError("dry run must not run anything")

    argv = [str(folder), "--dry-run", "--launcher", "accelerate", "--num-processes", "2"]
    assert main([*argv, "--output-root", str(tmp_path / "runs")], runner=no_runner) == 0
    out = capsys.readouterr().out
    assert (
        out.count("accelerate launch --num_processes 2 --multi_gpu -m lmms_eval --model qwen2_5_vl_vreason")
        == 2
    )
    assert out.startswith("# c1") and "bin/accelerate launch" in out  # this venv's, not PATH's
    assert "lr=0.0001" in out and str(tmp_path / "runs" / "c2") in out
    assert not (tmp_path / "runs").exists()


def test_invalid_config_fails_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = config_dict("bad", prune_only=True, lite=True)
    folder = write_config_files(tmp_path, [config_dict("good"), bad])

    def no_runner(*_args: object) -> int:
        raise AssertionError("nothing may run when any config is invalid")

    assert main([str(folder), "--output-root", str(tmp_path / "runs")], runner=no_runner) == 2
    assert "prune_only" in capsys.readouterr().err


# ----------------------------------------------------------------------------- resume


def test_resume_skips_finished_configs(
    tmp_path: Path, fake_lmms_eval: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_config_files(tmp_path, [config_dict("c1"), config_dict("c2", lr=1.0e-4)])
    argv = plain_argv(folder, tmp_path)
    assert main(argv) == 0
    first = calls_of(fake_lmms_eval)
    assert len(first) == 2
    out = capsys.readouterr().out
    assert "[1/2] c1 ... done in" in out and "[2/2] c2 ... done in" in out
    assert (tmp_path / "runs" / "c1" / CONFIG_COPY_NAME).is_file()
    assert list((tmp_path / "runs" / "c1").glob("Qwen__Qwen2.5-VL-3B-Instruct/*_results.json"))

    assert main(argv) == 0  # second invocation: both finished, nothing runs
    assert len(calls_of(fake_lmms_eval)) == 2
    out = capsys.readouterr().out
    assert "[1/2] c1 ... skipped (complete)" in out and "[2/2] c2 ... skipped (complete)" in out

    assert main([*argv, "--force"]) == 0
    assert len(calls_of(fake_lmms_eval)) == 4


def test_resume_recognises_typed_gen_kwargs(tmp_path: Path, fake_lmms_eval: Path) -> None:
    # lmms-eval records gen_kwargs typed (True, 0.3, 1024); the config holds them typed as well.
    sampled = {
        **config_dict("t3"),
        "gen_kwargs": {"do_sample": True, "temperature": 0.3, "max_new_tokens": 1024},
    }
    argv = plain_argv(write_config_files(tmp_path, [sampled]), tmp_path)
    assert main(argv) == 0 and len(calls_of(fake_lmms_eval)) == 1
    assert main(argv) == 0 and len(calls_of(fake_lmms_eval)) == 1  # complete: nothing reruns


def test_resume_reruns_only_the_unfinished_one(tmp_path: Path, fake_lmms_eval: Path, monkeypatch) -> None:
    folder = write_config_files(tmp_path, [config_dict("c1"), config_dict("c2", lr=1.0e-4)])
    argv = plain_argv(folder, tmp_path)
    monkeypatch.setenv("FAKE_LMMS_FAIL", "c2")
    assert main(argv) == 1  # lmms-eval exited 0 but wrote nothing: judged by files, c2 failed
    assert len(calls_of(fake_lmms_eval)) == 2
    monkeypatch.delenv("FAKE_LMMS_FAIL")
    assert main(argv) == 0
    calls = calls_of(fake_lmms_eval)
    assert len(calls) == 3 and str(tmp_path / "runs" / "c2") in calls[-1]
    monkeypatch.setenv("FAKE_LMMS_FAIL", "c2")
    assert main([*argv, "--force"]) == 1  # c2's old results must not pass a failed rerun off as done
    assert len(calls_of(fake_lmms_eval)) == 5


def test_limit_and_changed_args_are_not_complete(tmp_path: Path, fake_lmms_eval: Path) -> None:
    config = make_config("c", tasks=ALL_TASKS)
    runs = tmp_path / "runs"
    quiet = io.StringIO()
    limited = LaunchOptions(output_root=runs, launcher="plain", limit=3)
    outcomes = run_configs([config], limited, stream=quiet)
    assert [o.status for o in outcomes] == ["done"]
    out_dir = runs / "c"
    assert completion_status(config, out_dir, limit=3.0) == (True, "complete")
    complete, reason = completion_status(config, out_dir, limit=None)
    assert not complete and "--limit 3" in reason  # a --limit run does not count as the full run
    changed = make_config("c", tasks=ALL_TASKS, lr=1.0e-4)
    complete, reason = completion_status(changed, out_dir, limit=3.0)
    assert not complete and "model_args differ" in reason
    fewer = make_config("c", tasks=["mmvu"])
    assert completion_status(fewer, out_dir, limit=3.0)[0]  # a subset of the tasks is covered
    run_configs([config], limited, stream=quiet)
    assert len(calls_of(fake_lmms_eval)) == 1


def test_injected_runner_sees_each_unfinished_command(tmp_path: Path) -> None:
    seen: list[tuple[str, ...]] = []

    def runner(command, log_path: Path, env) -> int:
        seen.append(tuple(command))
        assert log_path.parent.name in ("a", "b") and "PATH" in env
        return 0  # writes nothing, so each run is judged failed

    configs = [make_config("a"), make_config("b")]
    options = LaunchOptions(output_root=tmp_path, launcher="plain", fail_fast=True)
    outcomes = run_configs(configs, options, runner=runner, stream=io.StringIO())
    assert [o.status for o in outcomes] == ["failed"] and len(seen) == 1


def test_lr_grid_runs_one_lmms_eval_per_member_and_collates_as_one_row(
    tmp_path: Path, fake_lmms_eval: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = {**config_dict("g"), "lr_grid": [1.0e-4, 2.0e-4]}
    folder = write_config_files(tmp_path, [grid, config_dict("c1")])
    argv = plain_argv(folder, tmp_path)
    assert main([*argv, "--only", "g-lr2e-4"]) == 0  # one member of the grid, by name
    (call,) = calls_of(fake_lmms_eval)
    assert "lr=0.0002" in call[call.index("--model_args") + 1].split(",")
    copy = yaml.safe_load((tmp_path / "runs" / "g-lr2e-4" / CONFIG_COPY_NAME).read_text())
    assert copy["lr_grid_group"] == "g" and copy["model_args"]["lr"] == 2.0e-4 and "lr_grid" not in copy
    assert main(argv) == 0  # the other member and c1 run; g-lr2e-4 is complete
    assert len(calls_of(fake_lmms_eval)) == 3
    out = capsys.readouterr().out
    assert "g-lr1e-4 ... done" in out and "g-lr2e-4 ... skipped (complete)" in out
    assert main([*argv, "--only", "nope"]) == 2
    assert "--only nope matches none" in capsys.readouterr().err

    assert collate_main([str(tmp_path / "runs"), "--format", "csv"]) == 0
    rows = {r["row"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert set(rows) == {"g", "c1"} and rows["g"]["kind"] == "lr_grid" and rows["g"]["n_lrs"] == "2"


def test_one_pass_grid_runs_once_scores_per_lr_and_fans_out(
    tmp_path: Path, fake_lmms_eval: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both members pending: one lmms-eval run with lr_grid=..., then the per-lr scorer; each member's
    folder gets its lr's results and config copy, so resume and collation see separate runs."""
    from lmms_vreason.experiments.launcher import GRID_RUNS
    from lmms_vreason.lmms.grid_score import single_lr_model_args

    grid = {**config_dict("g"), "lr_grid": [1.0e-4, 2.0e-4]}
    folder = write_config_files(tmp_path, [grid])
    seen: list[list[str]] = []

    def runner(command, log_path: Path, env) -> int:
        seen.append(list(command))
        if command[0] == "lmms-eval":  # the real fake: writes the grid run's own results
            return os.spawnvpe(os.P_WAIT, command[0], list(command), {**os.environ, **env})
        # the scorer: one lmms-eval output folder per lr, as lmms_vreason.lmms.grid_score writes them
        grid_dir = Path(command[-1])
        [own] = [p for p in grid_dir.rglob("*_results.json") if "lr_grid" not in p.parts]
        data = json.loads(own.read_text())
        for lr, label in ((1.0e-4, "1e-4"), (2.0e-4, "2e-4")):
            out = grid_dir / "lr_grid" / f"lr{label}" / own.parent.name
            out.mkdir(parents=True)
            args = single_lr_model_args(data["config"]["model_args"], lr)
            (out / "20260101_000000_results.json").write_text(
                json.dumps({**data, "config": {**data["config"], "model_args": args}})
            )
        return 0

    argv = plain_argv(folder, tmp_path)
    assert main(argv, runner=runner) == 0
    assert [c[0] for c in seen] == ["lmms-eval", sys.executable]
    model_args = seen[0][seen[0].index("--model_args") + 1].split(",")
    assert "lr_grid=0.0001:0.0002" in model_args and not any(a.startswith("lr=") for a in model_args)
    assert seen[0][seen[0].index("--output_path") + 1] == str(
        (tmp_path / "runs" / GRID_RUNS / "g").absolute()
    )
    out = capsys.readouterr().out
    assert "running one pass for 2 lrs" in out and "g-lr1e-4 ... done" in out and "g-lr2e-4 ... done" in out
    for name, lr in (("g-lr1e-4", 1.0e-4), ("g-lr2e-4", 2.0e-4)):
        copy = yaml.safe_load((tmp_path / "runs" / name / CONFIG_COPY_NAME).read_text())
        assert copy["model_args"]["lr"] == lr and copy["lr_grid_group"] == "g"
    assert main(argv, runner=runner) == 0 and len(seen) == 2  # resumed: nothing reruns
    assert "skipped (complete)" in capsys.readouterr().out
    assert collate_main([str(tmp_path / "runs"), "--format", "csv"]) == 0
    rows = {r["row"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert set(rows) == {"g"} and rows["g"]["kind"] == "lr_grid" and rows["g"]["n_lrs"] == "2"


def test_grid_mode_separate_runs_one_lmms_eval_per_lr(tmp_path: Path, fake_lmms_eval: Path) -> None:
    grid = {**config_dict("g"), "lr_grid": [1.0e-4, 2.0e-4, 3.0e-4]}
    folder = write_config_files(tmp_path, [grid])
    assert main([*plain_argv(folder, tmp_path), "--grid-mode", "separate"]) == 0
    calls = calls_of(fake_lmms_eval)
    assert len(calls) == 3 and all("lr_grid" not in c[c.index("--model_args") + 1] for c in calls)


def test_accelerate_asks_for_several_processes_explicitly(tmp_path: Path) -> None:
    """Without --multi_gpu accelerate starts one process unless several GPUs are visible."""
    options = LaunchOptions(output_root=tmp_path, num_processes=2)
    plan = build_plan(make_config("a"), options)
    assert plan.command[:5] == ("accelerate", "launch", "--num_processes", "2", "--multi_gpu")
    one = build_plan(make_config("a"), LaunchOptions(output_root=tmp_path, num_processes=1))
    assert "--multi_gpu" not in one.command


# ----------------------------------------------------------------------------- messages


def test_failed_line_carries_the_cause_from_this_runs_part_of_the_log(tmp_path: Path) -> None:
    """The FAILED line names the last error line of the run's own log, not only the log's path; an
    earlier run's error in the same (appended) log is not this run's cause."""
    outputs = iter(
        [
            ["Traceback (most recent call last):", '  File "x.py", line 1', "OSError: an earlier run"],
            [
                "2026-01-01 10:00:00 | ERROR    | lmms_eval.api.task:build:10 - [mmvu doc 3] sample failed: x",
                "Traceback (most recent call last):",
                '  File "lmms_eval/__main__.py", line 9, in cli_evaluate',
                "FileNotFoundError: /data/eval_mmvu.json is missing (VREASON_EVAL_ROOT='/data')",
                "|mmvu|none|0|media_error_rate|↓|0|",
                "Loading weights: 100%",
            ],
            ["Killed"],
            [],
        ]
    )

    def runner(command, log_path: Path, env) -> int:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a") as log:
            log.write(f"$ {' '.join(command)}\n" + "".join(line + "\n" for line in next(outputs)))
        return 0  # writes no results: failed

    options = LaunchOptions(output_root=tmp_path, launcher="plain")
    stream = io.StringIO()
    for _ in range(4):
        run_configs([make_config("c")], options, runner=runner, stream=stream)
    failed = [line for line in stream.getvalue().splitlines() if "FAILED" in line]
    log = tmp_path / "c" / "lmms_eval.log"
    assert failed[0].endswith(f"FAILED in 0 s: OSError: an earlier run (missing results for mmvu; see {log})")
    assert failed[1].endswith(
        "FAILED in 0 s: FileNotFoundError: /data/eval_mmvu.json is missing (VREASON_EVAL_ROOT='/data') "
        f"(missing results for mmvu; see {log})"
    )
    assert "FAILED in 0 s: Killed (missing results for mmvu" in failed[2]
    assert failed[3].endswith(f"FAILED in 0 s: (missing results for mmvu; see {log})")  # it wrote nothing


def test_failure_cause_reads_loguru_errors_and_cuts_long_lines(tmp_path: Path) -> None:
    from lmms_vreason.experiments.launcher import CAUSE_CHARS, failure_cause

    log = tmp_path / "log"
    log.write_text(
        "ok\n2026-01-01 10:00:00 | ERROR    | lmms_eval.evaluator:run:12 - CUDA out of memory\ndone\n"
    )
    assert failure_cause(log) == "CUDA out of memory"
    log.write_text("RuntimeError: " + "x" * 1000 + "\n")
    cause = failure_cause(log)
    assert cause is not None and len(cause) == CAUSE_CHARS and cause.endswith("...")
    assert failure_cause(tmp_path / "absent") is None


def test_a_config_is_named_by_its_bare_name_from_any_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no model_configs/ here: the checkout's own is used

    def no_runner(*_args: object) -> int:
        raise AssertionError("dry run")

    names = ["t1-7b-32f128-base", "t1-7b-32f128-lite-lr1.5e-4", "t1-3b-*-base"]
    assert main([*names, "--dry-run", "--launcher", "plain"], runner=no_runner) == 0
    planned = [line.split(":")[0] for line in capsys.readouterr().out.splitlines() if line.startswith("# ")]
    assert planned == ["# t1-7b-32f128-base", "# t1-7b-32f128-lite-lr1.5e-4", "# t1-3b-32f128-base"]
    assert main(["t1-7b-32f128-bse", "--dry-run"], runner=no_runner) == 2
    err = capsys.readouterr().err
    assert "no config file matches 't1-7b-32f128-bse'" in err and "did you mean t1-7b-32f128-base" in err
    assert main(["t1-7b-32f128-lite-lr9e-4", "--dry-run"], runner=no_runner) == 2
    assert (
        "has no run named t1-7b-32f128-lite-lr9e-4; its runs: t1-7b-32f128-lite-lr5e-5"
        in capsys.readouterr().err
    )
