"""Every script under scripts/ keeps the convention (``--help``, ``--dry-run``: print the commands,
run nothing), and the commands the launch recipes print, and the README's reproduce section, run.

The convention is checked for every file under scripts/ (a new script is covered when it is added).
The commands are then executed as far as this machine allows: ``vreason data check`` on the fixture
benchmark, ``vreason run ... --dry-run`` on the real configs (which plans the real lmms-eval and
accelerate command lines), ``vreason collate`` and ``vreason data download`` (offline) past their
argument parsing, and the raw accelerate command line through accelerate's own parser.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from huggingface_hub import constants as hub_constants

from lmms_vreason.cli import main as cli_main
from lmms_vreason.testing.fixtures import make_fixture_bench

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (ROOT / "scripts").rglob("*") if p.is_file() and p.suffix != ".md")
OURS = (
    "reproduce_table1.sh",
    "ci_accuracy_gate.sh",
    "slurm/multinode.sbatch",
    "slurm/single_node.sbatch",
)
LAUNCHERS = ("vreason", "lmms-eval", "accelerate", "srun", "sbatch", "torchrun", "scontrol")
"""Commands a dry run must not start (shims on PATH record any call)."""


@pytest.fixture(scope="module")
def fixture_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fixture_bench(tmp_path_factory.mktemp("fixture"))


@pytest.fixture
def shims(tmp_path: Path) -> tuple[Path, Path]:
    """A PATH folder whose launchers only log their calls; returns (folder, call log)."""
    folder, log = tmp_path / "shims", tmp_path / "calls.log"
    folder.mkdir()
    for name in LAUNCHERS:
        shim = folder / name
        shim.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n')
        shim.chmod(0o755)
    return folder, log


@pytest.fixture
def vreason(tmp_path: Path) -> str:
    """This interpreter's ``vreason`` (a venv made with ``--system-site-packages`` may lack the script)."""
    path = tmp_path / "vreason-here"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m lmms_vreason.cli "$@"\n')
    path.chmod(0o755)
    return str(path)


def _bash(script: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        ["bash", str(script), *args],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _printed(stdout: str) -> list[str]:
    """The commands a dry run printed (``+ CMD`` lines)."""
    return [line[2:] for line in stdout.splitlines() if line.startswith("+ ")]


def test_the_launch_recipes_are_there() -> None:
    names = {p.relative_to(ROOT / "scripts").as_posix() for p in SCRIPTS}
    assert set(OURS) <= names, names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(ROOT / "scripts").as_posix())
def test_every_script_parses_has_help_and_a_dry_run_that_runs_nothing(
    script: Path, shims: tuple[Path, Path], tmp_path: Path
) -> None:
    assert script.read_text().startswith("#!"), f"{script.name}: no shebang line"
    syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    folder, log = shims
    env = {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "VREASON_EVAL_ROOT": str(tmp_path)}
    helped = _bash(script, "--help", env=env, cwd=tmp_path)
    assert helped.returncode == 0 and "usage" in helped.stdout.lower(), helped.stdout + helped.stderr
    dry = _bash(script, "--dry-run", env=env, cwd=tmp_path)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert _printed(dry.stdout), f"{script.name} --dry-run printed no `+ command` line:\n{dry.stdout}"
    assert not log.exists(), f"{script.name} --dry-run ran: {log.read_text()}"


@pytest.mark.parametrize("script", OURS)
def test_an_unknown_argument_is_refused_naming_the_valid_ones(script: str, tmp_path: Path) -> None:
    proc = _bash(ROOT / "scripts" / script, "--dryrun", cwd=tmp_path)
    assert proc.returncode == 2 and "--dry-run" in proc.stderr and "--help" in proc.stderr


def _check_vreason_command(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run one printed ``vreason`` command as far as possible here, in this process (the ``vreason``
    command is :func:`lmms_vreason.cli.main`), in ``cwd`` with ``env``; returns its output."""
    sub = argv[1]
    if sub == "run":  # plan the real lmms-eval/accelerate commands, run nothing
        cut = argv.index("--") if "--" in argv else len(argv)
        argv = [*argv[:cut], "--dry-run", *argv[cut:]]
    elif argv[1:3] == ["data", "check"] and "--no-decode" not in argv:
        argv = [*argv, "--no-decode"]  # decoding is tested in test_data.py; here: paths and arguments
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(out), redirect_stderr(err):
        for name in ("VREASON_EVAL_ROOT", "HF_HUB_OFFLINE"):
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        patch.chdir(cwd)
        patch.setattr(hub_constants, "HF_HUB_OFFLINE", True)  # read at import, so HF_HUB_OFFLINE=1 is late
        try:
            rc = cli_main(argv[1:])
        except SystemExit as exc:  # argparse refusing the arguments
            rc = exc.code
    text = out.getvalue() + err.getvalue()
    assert "usage:" not in text, f"{shlex.join(argv)}: arguments refused\n{text}"
    if sub == "data" and argv[2] == "download":  # offline here: fails after parsing, naming why
        assert "offline" in text, text
    elif sub == "collate":  # nothing has run, so there is nothing to collate yet
        assert rc in (1, 2) and ("no lmms-eval results" in text or "not a directory" in text), text
    else:
        assert rc == 0, f"{shlex.join(argv)}\n{text}"
    return text


def test_reproduce_table1_commands_run(tmp_path: Path, vreason: str, fixture_data: Path) -> None:
    env = {
        **os.environ,
        "VREASON": vreason,
        "DATA_DIR": str(fixture_data),
        "OUTPUT_ROOT": str(tmp_path / "runs"),
        "GPUS": "4",
        "HF_HUB_OFFLINE": "1",
    }
    dry = _bash(ROOT / "scripts" / "reproduce_table1.sh", "--dry-run", env=env, cwd=tmp_path)
    commands = [shlex.split(line) for line in _printed(dry.stdout)]
    assert [c[1:3] if c[0] == vreason else c[:1] for c in commands] == [
        ["data", "download"],
        ["data", "check"],
        ["export"],
        ["run", str(ROOT / "model_configs" / "t1-7b-32f128-*.yaml")],
        ["collate", str(tmp_path / "runs")],
    ]
    outputs = [_check_vreason_command(c, env, tmp_path) for c in commands if c[0] == vreason]
    check, plan = outputs[1], outputs[2]
    assert "eval_mmvu.json" in check
    # the base run and the two 10-lr grids, each one lmms-eval run over 4 processes
    assert plan.count("accelerate launch --num_processes 4 --multi_gpu -m lmms_eval") == 3, plan
    assert "# t1-7b-32f128-base" in plan and "lr_grid=5e-05:0.0001" in plan
    assert not (tmp_path / "runs").exists()


def test_multinode_template_spans_every_node_with_its_own_rank(
    tmp_path: Path, vreason: str, fixture_data: Path
) -> None:
    env = {**os.environ, "VREASON": vreason, "VREASON_EVAL_ROOT": str(fixture_data), "OUTPUT_ROOT": "runs"}
    env.update(SLURM_NNODES="3", GPUS_PER_NODE="4", HEAD="gpu-a01", PORT="29611")
    dry = _bash(ROOT / "scripts" / "slurm" / "multinode.sbatch", "--dry-run", env=env, cwd=tmp_path)
    check, launch = _printed(dry.stdout)
    _check_vreason_command(shlex.split(check), env, tmp_path)
    srun = shlex.split(launch)
    assert srun[:4] == ["srun", "--nodes=3", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert srun[4:6] == ["bash", "-c"] and len(srun) == 7
    for rank in (0, 2):  # what the srun task on node `rank` runs, planned by vreason run
        proc = subprocess.run(
            ["bash", "-c", srun[6] + " --dry-run"],
            env={**env, "SLURM_NODEID": str(rank)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        want = (
            "accelerate launch --num_processes 12 --num_machines 3 --machine_rank "
            f"{rank} --main_process_ip gpu-a01 --multi_gpu --main_process_port 29611 -m lmms_eval"
        )
        assert proc.stdout.count(want) == 3, proc.stdout


def test_multinode_template_plain_lmms_eval_mode_is_a_valid_accelerate_command(
    tmp_path: Path, fixture_data: Path
) -> None:
    from accelerate.commands.launch import launch_command_parser

    env = {"MODE": "lmms-eval", "VREASON_EVAL_ROOT": str(fixture_data), "SLURM_NNODES": "2"}
    dry = _bash(ROOT / "scripts" / "slurm" / "multinode.sbatch", "--dry-run", env=env, cwd=tmp_path)
    inner = shlex.split(_printed(dry.stdout)[-1])[6].replace('"$SLURM_NODEID"', "1")
    argv = shlex.split(inner)
    assert argv[:2] == ["accelerate", "launch"]
    args = launch_command_parser().parse_args(argv[2:])
    assert (args.num_machines, args.machine_rank, args.num_processes) == (2, 1, 16)
    assert args.module and args.training_script == "lmms_eval" and args.multi_gpu
    assert args.training_script_args[:2] == ["--model", "qwen2_5_vl_vreason"]


def test_single_node_template_runs_vreason_run_on_the_node(
    tmp_path: Path, vreason: str, fixture_data: Path
) -> None:
    env = {**os.environ, "VREASON": vreason, "VREASON_EVAL_ROOT": str(fixture_data), "GPUS": "8"}
    env["CONFIGS"] = str(ROOT / "model_configs" / "t2-*.yaml")  # Table 2: sharded models, one process each
    dry = _bash(ROOT / "scripts" / "slurm" / "single_node.sbatch", "--dry-run", env=env, cwd=tmp_path)
    check, run = (shlex.split(line) for line in _printed(dry.stdout))
    _check_vreason_command(check, env, tmp_path)
    plan = _check_vreason_command(run, env, tmp_path)
    assert plan.count("accelerate launch --num_processes 1 --main_process_port 29500 -m lmms_eval") == 4, plan


def test_readme_reproduce_section_points_at_the_scripts_and_its_commands_run(
    tmp_path: Path, vreason: str, fixture_data: Path
) -> None:
    text = (ROOT / "README.md").read_text()
    section = re.search(r"\n## Reproducing Table 1\n(.*?)\n## ", text, re.S)
    assert section is not None
    body = section.group(1)
    for script in OURS:
        assert f"scripts/{script}" in body, f"the reproduce section does not point at scripts/{script}"
    block = re.search(r"```bash\n(.*?)```", body, re.S)
    assert block is not None
    commands = [line.split(" #")[0] for line in block.group(1).splitlines() if line.startswith("vreason ")]
    assert {shlex.split(c)[1] for c in commands} >= {"data", "run", "collate"}
    # run where the commands' relative paths resolve: model_configs/ as in the repository, the data
    # check on $VREASON_EVAL_ROOT = the fixture, and no runs yet
    (tmp_path / "model_configs").symlink_to(ROOT / "model_configs")
    env = {**os.environ, "VREASON_EVAL_ROOT": str(fixture_data), "HF_HUB_OFFLINE": "1"}
    for command in commands:
        _check_vreason_command([vreason, *shlex.split(command)[1:]], env, tmp_path)


def test_readme_script_invocations_dry_run(tmp_path: Path, vreason: str, fixture_data: Path) -> None:
    """Each ``scripts/...`` command line in the README's reproduce section, with ``--dry-run``."""
    text = (ROOT / "README.md").read_text()
    body = re.search(r"\n## Reproducing Table 1\n(.*?)\n## ", text, re.S).group(1)
    lines = [
        line
        for block in re.findall(r"```bash\n(.*?)```", body, re.S)
        for line in block.splitlines()
        if "scripts/" in line and not line.lstrip().startswith("#")
    ]
    assert lines, "the reproduce section shows no scripts/ command"
    for line in lines:
        words = shlex.split(line)
        cut = next(i for i, w in enumerate(words) if w.startswith("scripts/"))
        assigned = dict(w.split("=", 1) for w in words[:cut])
        env = {**assigned, "VREASON": vreason, "DATA_DIR": str(fixture_data), "OUTPUT_ROOT": str(tmp_path)}
        proc = _bash(ROOT / words[cut], *words[cut + 1 :], "--dry-run", env=env, cwd=tmp_path)
        assert proc.returncode == 0 and _printed(proc.stdout), line + "\n" + proc.stdout + proc.stderr
        if assigned.get("GPUS"):
            assert f"--num-processes {assigned['GPUS']}" in proc.stdout


def test_accuracy_gate_dry_run_plans_the_recipe_and_its_commands_run(tmp_path: Path, vreason: str) -> None:
    from lmms_vreason.analysis.compare import build_parser
    from lmms_vreason.lmms.args import parse_model_args
    from lmms_vreason.testing.demo import BACKEND, model_args

    script = ROOT / "scripts" / "ci_accuracy_gate.sh"
    env = {**os.environ, "VREASON": vreason, "BASELINE": str(tmp_path / "base"), "WORK": str(tmp_path / "w")}
    commands = [
        shlex.split(line) for line in _printed(_bash(script, "--dry-run", env=env, cwd=tmp_path).stdout)
    ]
    assert [c[1] if c[0] == vreason else c[0] for c in commands] == [
        "tiny",
        "fixtures",
        "rm",
        "export",
        "lmms-eval",
        "mkdir",  # no baseline yet: this run becomes it
        "cp",
    ]
    for command in commands[:2]:  # the trained model and the held-out fixture, written for real
        _check_vreason_command(command, env, tmp_path)
    assert (tmp_path / "w" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "w" / "data" / "eval_mmvu.json").is_file()
    lmms = commands[4]
    assert lmms[lmms.index("--model") + 1] == BACKEND
    args = dict(item.split("=", 1) for item in lmms[lmms.index("--model_args") + 1].split(","))
    parse_model_args(args)  # names and values the backend accepts
    demo = dict(item.split("=", 1) for item in model_args(Path(args["pretrained"]), vreason=False).split(","))
    assert args.items() <= demo.items()  # the demo's frame/pixel budget and base decoding

    (tmp_path / "base").mkdir()
    gate = shlex.split(_printed(_bash(script, "--dry-run", env=env, cwd=tmp_path).stdout)[-1])
    assert gate[:2] == [vreason, "compare"] and gate[2:4] == [
        str(tmp_path / "base"),
        str(tmp_path / "w" / "candidate"),
    ]
    parsed = build_parser().parse_args(gate[2:])
    assert parsed.gate and (parsed.margin, parsed.alpha) == (1.0, 0.05)


def test_readme_gate_section_calls_the_script() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Gate your CI on accuracy", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:bash|yaml)\n(.*?)```", section, re.S)
    assert any("scripts/ci_accuracy_gate.sh" in block for block in blocks), section[:500]
