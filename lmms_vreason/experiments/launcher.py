"""Run experiment configs through lmms-eval, one output folder per config, resumably (``vreason run``).

Each config becomes one lmms-eval invocation (``accelerate launch -m lmms_eval ...`` for data
parallel over N GPUs, or plain ``lmms-eval ...``) writing to ``<output_root>/<config name>``. The
members of an lr grid run together by default (``--grid-mode one-pass``): one lmms-eval run with
``lr_grid=...`` decodes every request once per lr after one prefill (``<output_root>/.lr_grid/<grid>``),
``vreason grid-score`` scores every lr with the tasks' own code, and each member's folder receives its
lr's results, so collation and resume see the members exactly as separate runs
(``--grid-mode separate`` runs them one by one). A config whose folder already holds a results JSON covering all
its tasks, produced with the same model arguments, generation overrides and ``--limit``, is
skipped, so a sweep of ~90 runs can be interrupted and restarted. lmms-eval exits 0 even when a
run fails, so success is judged by the files it wrote (read by :mod:`lmms_vreason.analysis.runs`),
never by its exit code.

Several machines (``--num-machines N --machine-rank R --main-process-ip HOST``, accelerate's own
flags): the same ``vreason run`` runs on every machine (e.g. one ``srun`` task per node, see
``scripts/slurm/``) and each lmms-eval run spans all of them, ``--num-processes`` being the total
over all machines, as for accelerate. Every machine takes the same decisions (which configs are
complete is read from the shared output root before each launch), but only machine 0, whose rank-0
process writes lmms-eval's results, keeps the books: config copies, lr-grid scoring and fan-out,
and judging a run by its files; the other machines judge their share by its exit code and log to
``<output_root>/.machine<R>/<name>.log``.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from lmms_vreason.analysis.runs import ResultsFile, read_results
from lmms_vreason.cli import HelpFormatter, prog
from lmms_vreason.core.settings import lr_label
from lmms_vreason.experiments.configs import (
    ConfigError,
    ExperimentConfig,
    load_configs,
    write_config_copy,
)
from lmms_vreason.lmms.grid_score import GRID_DIR
from lmms_vreason.lmms.task_registry import task_dir
from lmms_vreason.provenance import RUN_INFO_GLOB

LauncherKind = Literal["plain", "accelerate"]
LAUNCHERS: tuple[str, ...] = ("accelerate", "plain")
GridMode = Literal["one-pass", "separate"]
GRID_MODES: tuple[str, ...] = ("one-pass", "separate")
LOG_NAME = "lmms_eval.log"
GRID_RUNS = ".lr_grid"
"""Folder under the output root holding the one-pass grid runs (a dot folder: collation skips it)."""

RESERVED_ARGS = frozenset(
    {"--model", "--model_args", "--tasks", "--gen_kwargs", "--output_path", "--limit", "--include_path"}
)
"""lmms-eval flags the launcher sets itself; passing them after ``--`` would contradict the config
(``--limit`` has its own option because resume has to know it)."""

Runner = Callable[[Sequence[str], Path, Mapping[str, str]], int]
"""Runs one command (argv, log file, environment) and returns its exit code (injectable for tests)."""


def console_script(name: str) -> str:
    """This interpreter's own ``name`` script (``.venv/bin/lmms-eval``), else ``name`` from PATH.

    Running ``.venv/bin/vreason run`` without activating the venv must not pick
    up another environment's lmms-eval or accelerate (or none at all).
    """
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else name


def detect_num_gpus() -> int:
    """GPUs visible to this process, without importing torch: CUDA_VISIBLE_DEVICES, then nvidia-smi."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v for v in visible.split(",") if v.strip() and v.strip() != "-1"]
        return max(len(ids), 1)
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=False).stdout
        except (OSError, subprocess.SubprocessError):
            return 1
        return max(sum(1 for line in out.splitlines() if line.startswith("GPU ")), 1)
    return 1


@dataclass(frozen=True)
class LaunchOptions:
    """How to launch: which launcher, how many processes, where outputs go, what to pass through."""

    output_root: Path
    launcher: LauncherKind = "accelerate"
    num_processes: int = 1
    main_process_port: int | None = None
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: str | None = None
    include_path: str | None = None
    limit: float | None = None
    extra_args: tuple[str, ...] = ()
    lmms_eval_bin: str = "lmms-eval"
    accelerate_bin: str = "accelerate"
    force: bool = False
    dry_run: bool = False
    verbose: bool = False
    fail_fast: bool = False
    grid_mode: GridMode = "one-pass"

    def __post_init__(self) -> None:
        if self.grid_mode not in GRID_MODES:
            raise ValueError(f"grid_mode must be one of {GRID_MODES}, got {self.grid_mode!r}")
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"launcher must be one of {LAUNCHERS}, got {self.launcher!r}")
        if self.num_processes < 1:
            raise ValueError(f"num_processes must be >= 1, got {self.num_processes}")
        if self.num_machines < 1 or not 0 <= self.machine_rank < self.num_machines:
            raise ValueError(
                f"need num_machines >= 1 and 0 <= machine_rank < num_machines, "
                f"got {self.num_machines} and {self.machine_rank}"
            )
        if self.num_machines > 1:
            if self.launcher != "accelerate":
                raise ValueError("several machines need the accelerate launcher (--launcher accelerate)")
            if not self.main_process_ip:
                raise ValueError("several machines need main_process_ip (machine 0's address)")
            if self.num_processes < self.num_machines:
                raise ValueError(
                    f"num_processes ({self.num_processes}) is the total over all machines and must be "
                    f">= num_machines ({self.num_machines})"
                )
        if self.limit is not None and self.limit < 0 and self.limit != -1:
            raise ValueError(f"limit must be -1 or >= 0, got {self.limit}")
        owned = [a for a in self.extra_args if a.split("=", 1)[0] in RESERVED_ARGS]
        if owned:
            raise ValueError(
                f"extra args may not set {', '.join(owned)}: the config and the launcher's own options do"
            )
        object.__setattr__(self, "output_root", Path(self.output_root))
        object.__setattr__(self, "extra_args", tuple(self.extra_args))

    @property
    def keeps_books(self) -> bool:
        """Whether this machine writes config copies, scores lr grids and judges runs by their files
        (machine 0 only: its rank-0 process writes lmms-eval's results)."""
        return self.machine_rank == 0

    def log_path(self, run_dir: Path, name: str) -> Path:
        """This machine's launch log of one run: ``<run_dir>/lmms_eval.log`` on machine 0; on machine
        R, ``<output_root>/.machine<R>/<name>.log`` (machines share the output root, and machine 0
        may clear a grid's folder while another machine's launch is starting)."""
        if self.machine_rank == 0:
            return run_dir / LOG_NAME
        return (self.output_root / f".machine{self.machine_rank}" / f"{name}.log").absolute()

    @property
    def effective_limit(self) -> float | None:
        """``--limit`` as lmms-eval records it in results (None and -1 both mean "all samples")."""
        return None if self.limit is None or self.limit == -1 else float(self.limit)


@dataclass(frozen=True)
class RunPlan:
    """One config's launch: the command, where it writes, and how many processes it gets."""

    config: ExperimentConfig
    output_dir: Path
    command: tuple[str, ...]
    num_processes: int

    @property
    def shell(self) -> str:
        return shlex.join(self.command)


def output_dir_for(config: ExperimentConfig, options: LaunchOptions) -> Path:
    return (options.output_root / config.name).absolute()


def lmms_eval_args(config: ExperimentConfig, output_dir: Path, options: LaunchOptions) -> list[str]:
    """The lmms-eval arguments of one config (shared by both launchers)."""
    args = [
        "--model",
        config.model,
        "--model_args",
        config.model_args_string,
        "--tasks",
        ",".join(config.tasks),
    ]
    if config.gen_kwargs:
        args += ["--gen_kwargs", config.gen_kwargs_string]
    args += ["--output_path", str(output_dir), "--log_samples"]
    if options.include_path:
        args += ["--include_path", options.include_path]
    if options.limit is not None:
        args += ["--limit", format(options.limit, "g")]
    return args + list(options.extra_args)


def build_plan(config: ExperimentConfig, options: LaunchOptions, output_dir: Path | None = None) -> RunPlan:
    """The command for one config. A model sharded with ``device_map`` always runs as one process
    (on one machine: such a config cannot be spread over several)."""
    if config.model_parallel and options.num_machines > 1:
        raise ValueError(
            f"config {config.name} shards its model with device_map and runs as one process on one "
            f"machine; run it without --num-machines (a single-node job)"
        )
    output_dir = output_dir or output_dir_for(config, options)
    args = lmms_eval_args(config, output_dir, options)
    nproc = 1 if config.model_parallel else options.num_processes
    if options.launcher == "plain":
        command = [options.lmms_eval_bin, *args]
    else:
        command = [options.accelerate_bin, "launch", "--num_processes", str(nproc)]
        if options.num_machines > 1:
            command += [
                "--num_machines",
                str(options.num_machines),
                "--machine_rank",
                str(options.machine_rank),
                "--main_process_ip",
                str(options.main_process_ip),
            ]
        if nproc > 1:  # without it accelerate starts one process unless several GPUs are visible
            command.append("--multi_gpu")
        if options.main_process_port is not None:
            command += ["--main_process_port", str(options.main_process_port)]
        command += ["-m", "lmms_eval", *args]
    return RunPlan(config=config, output_dir=output_dir, command=tuple(command), num_processes=nproc)


def one_pass_config(label: str, members: Sequence[ExperimentConfig]) -> ExperimentConfig:
    """The single lmms-eval run that decodes every member's lr side by side (``lr_grid=a:b:...``)."""
    first = members[0]
    model_args = {k: v for k, v in first.model_args.items() if k != "lr"}
    model_args["lr_grid"] = ":".join(repr(float(m.lr)) for m in members)  # type: ignore[arg-type]
    return dataclasses.replace(first, name=label, model_args=model_args, lr_grid_group=None, source=None)


def grid_groups(
    configs: Sequence[ExperimentConfig], options: LaunchOptions
) -> list[ExperimentConfig | tuple[str, tuple[ExperimentConfig, ...]]]:
    """The configs in order, the members of each lr grid gathered into one ``(label, members)`` item
    where they run in one pass (members already complete stay out unless ``force``)."""
    if options.grid_mode == "separate":
        return list(configs)
    limit = options.effective_limit
    pending: dict[str, list[ExperimentConfig]] = {}
    for config in configs:
        group = config.lr_grid_group
        if group is not None and (
            options.force or not completion_status(config, output_dir_for(config, options), limit)[0]
        ):
            pending.setdefault(group, []).append(config)
    items: list[ExperimentConfig | tuple[str, tuple[ExperimentConfig, ...]]] = []
    placed: set[str] = set()
    for config in configs:
        group = config.lr_grid_group
        if group is None or len(pending.get(group, ())) < 2:
            items.append(config)
        elif group not in placed:
            items.append((group, tuple(pending[group])))
            placed.add(group)
        elif config not in pending[group]:
            items.append(config)  # complete: reported as skipped
    return items


# ----------------------------------------------------------------------------- completeness


def _parse_arg_string(text: Any) -> dict[str, str]:
    """Parse lmms-eval's ``k=v,k=v`` into strings, normalised so equal values compare equal."""
    if isinstance(text, Mapping):
        items = {str(k): v for k, v in text.items()}
    elif not text:
        return {}
    else:
        items = {}
        for part in str(text).split(","):
            if "=" in part:
                key, value = part.split("=", 1)
                items[key.strip()] = value.strip()
    return {key: _canonical(value) for key, value in items.items() if value is not None}


def _canonical(value: Any) -> str:
    text = str(value).strip()
    if text.lower() in ("true", "false"):
        return text.lower()
    try:
        number = float(text)
    except ValueError:
        return text
    return repr(float(number))


def results_match(config: ExperimentConfig, results: ResultsFile, limit: float | None) -> str | None:
    """Why a results file does not belong to this config and limit, or None when it does."""
    if _parse_arg_string(results.config.get("model_args")) != _parse_arg_string(config.model_args_string):
        return "model_args differ"
    if _parse_arg_string(results.config.get("gen_kwargs")) != _parse_arg_string(config.gen_kwargs_string):
        return "gen_kwargs differ"
    recorded = results.limit
    if recorded != limit:
        made = "all samples" if recorded is None else f"--limit {recorded:g}"
        wanted = "all samples" if limit is None else f"--limit {limit:g}"
        return f"made with {made}, this run wants {wanted}"
    return None


def completion_status(
    config: ExperimentConfig,
    output_dir: Path,
    limit: float | None = None,
    *,
    ignore: frozenset[Path] = frozenset(),
) -> tuple[bool, str]:
    """Whether the folder holds results for every task of the config, and a one-line reason.

    Results may be spread over several files (a task rerun alone); only files produced with this
    config's model arguments, generation overrides and limit count, so editing a config makes its
    old results stale instead of silently reusing them. Files in ``ignore`` do not count.
    """
    if not output_dir.is_dir():
        return False, "no output yet"
    covered: set[str] = set()
    stale: list[str] = []
    for results in read_results(output_dir):
        if results.path in ignore:
            continue
        mismatch = results_match(config, results, limit)
        if mismatch:
            stale.append(f"{results.path.name}: {mismatch}")
            continue
        covered.update(results.tasks_with_metrics())
    missing = [task for task in config.leaf_tasks if task not in covered]
    if not missing:
        return True, "complete"
    if stale and not covered:
        return False, f"only results made with other settings ({stale[-1]})"
    return False, f"missing results for {', '.join(missing)}"


# ----------------------------------------------------------------------------- running


def default_runner(
    command: Sequence[str], log_path: Path, env: Mapping[str, str], echo: TextIO | None = None
) -> int:
    """Run a command, teeing its output into ``log_path`` (and ``echo`` when verbose)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        try:
            proc = subprocess.Popen(
                list(command),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=dict(env),
                text=True,
                errors="replace",
                bufsize=1,
            )
        except OSError as exc:
            log.write(f"cannot start: {exc}\n")
            if echo is not None:
                echo.write(f"cannot start {command[0]}: {exc}\n")
            return 127
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if echo is not None:
                echo.write(line)
        return proc.wait()


_ERROR_LINE = re.compile(r"[A-Z]\w*(?:Error|Exception)\b|\| (?:ERROR|CRITICAL) +\||\berror: |\bKilled\b")
"""A line that states an error: a Python exception (``ValueError: ...``), a loguru ERROR/CRITICAL
record (lmms-eval's logger), an argparse ``error:`` or the kernel's ``Killed``. Case-sensitive, so
metric names such as ``media_error_rate`` in a results table do not count."""
_LOGURU_PREFIX = re.compile(r"^.*?\| (?:ERROR|CRITICAL) +\| \S+ - ")
CAUSE_CHARS = 300
"""A cause is cut to this many characters (the log has the rest)."""


def failure_cause(log_path: Path, start: int = 0) -> str | None:
    """The last error line this run wrote to its log (from byte ``start``: earlier runs' output is not
    this run's), else its last line; ``None`` when it wrote nothing. Shown on the ``FAILED`` line so
    the cause is seen without opening the log."""
    try:
        with log_path.open("rb") as log:
            log.seek(start)
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    lines = [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]
    lines = [line for line in lines if not line.startswith("$ ")]  # the command line the runner logs
    if not lines:
        return None
    cause = next((line for line in reversed(lines) if _ERROR_LINE.search(line)), lines[-1])
    cause = _LOGURU_PREFIX.sub("", cause)
    return cause if len(cause) <= CAUSE_CHARS else cause[: CAUSE_CHARS - 3] + "..."


def _log_size(log_path: Path) -> int:
    return log_path.stat().st_size if log_path.is_file() else 0


def _failed_text(why: str, cause: str | None, log_path: Path) -> str:
    return f"{cause} ({why}; see {log_path})" if cause else f"({why}; see {log_path})"


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one config (for the summary and the exit code)."""

    name: str
    status: Literal["done", "skipped", "failed", "planned"]
    seconds: float = 0.0
    reason: str = ""


@dataclass
class Progress:
    """``[i/N] name ... status`` lines with an estimate of the time left from finished runs.

    Mutable on purpose: it accumulates the durations the estimate is made from.
    """

    total: int
    stream: TextIO
    durations: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def line(self, index: int, name: str, text: str) -> None:
        width = len(str(self.total))
        self.stream.write(f"[{index:>{width}}/{self.total}] {name} ... {text}\n")
        self.stream.flush()

    def eta(self, remaining: int) -> str:
        if not self.durations or remaining <= 0:
            return ""
        left = sum(self.durations) / len(self.durations) * remaining
        return f" (elapsed {_fmt_seconds(time.monotonic() - self.started)}, ~{_fmt_seconds(left)} left)"


def _fmt_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def run_configs(
    configs: Sequence[ExperimentConfig],
    options: LaunchOptions,
    *,
    runner: Runner | None = None,
    stream: TextIO | None = None,
) -> list[RunOutcome]:
    """Launch every config in order; skip finished ones unless ``force``; never stop on one failure
    unless ``fail_fast`` (a sweep of many runs should not die with the first bad one)."""
    stream = stream or sys.stdout
    if runner is None:

        def runner(command: Sequence[str], log_path: Path, env: Mapping[str, str]) -> int:
            return default_runner(command, log_path, env, echo=stream if options.verbose else None)

    progress = Progress(total=len(configs), stream=stream)
    limit = options.effective_limit
    items = grid_groups(configs, options)
    outcomes: list[RunOutcome] = []
    to_run = sum(
        1
        for item in items
        if isinstance(item, tuple)
        or options.force
        or not completion_status(item, output_dir_for(item, options), limit)[0]
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    index = 0
    for item in items:
        if isinstance(item, tuple):
            label, members = item
            outcomes += _run_grid(label, members, options, runner, progress, index, env)
            index += len(members)
            to_run -= 1
            if options.fail_fast and any(o.status == "failed" for o in outcomes):
                break
            continue
        index += 1
        plan = build_plan(item, options)
        name = plan.config.name
        complete, reason = completion_status(plan.config, plan.output_dir, limit)
        if complete and not options.force:
            progress.line(index, name, "skipped (complete)")
            outcomes.append(RunOutcome(name, "skipped", reason=reason))
            continue
        if complete:
            reason = "complete, rerun forced"
        if options.dry_run:
            stream.write(f"# {name}: {reason}; writes {plan.output_dir}\n{plan.shell}\n")
            outcomes.append(RunOutcome(name, "planned", reason=reason))
            continue
        log_path = options.log_path(plan.output_dir, name)
        if options.keeps_books:
            write_config_copy(plan.config, plan.output_dir)
        note = f", {plan.num_processes} process(es)" if options.launcher == "accelerate" else ""
        if options.num_machines > 1:
            note += f" on {options.num_machines} machines, this is machine {options.machine_rank}"
        progress.line(index, name, f"running ({reason}{note}; log {log_path})")
        before = frozenset(r.path for r in read_results(plan.output_dir))
        log_start = _log_size(log_path)
        start = time.monotonic()
        rc = runner(plan.command, log_path, env)
        seconds = time.monotonic() - start
        if not options.keeps_books:
            outcomes.append(_share_outcome(name, rc, seconds, log_path, progress, index, options))
            to_run -= 1
            if options.fail_fast and rc:
                break
            continue
        # Judge this run by the files it wrote: old results must not turn a failed rerun into "done".
        complete, reason = completion_status(plan.config, plan.output_dir, limit, ignore=before)
        progress.durations.append(seconds)
        to_run -= 1
        if complete:
            progress.line(index, name, f"done in {_fmt_seconds(seconds)}{progress.eta(to_run)}")
            outcomes.append(RunOutcome(name, "done", seconds))
        else:
            why = f"exit code {rc}; {reason}" if rc else reason
            cause = failure_cause(log_path, log_start)
            progress.line(
                index, name, f"FAILED in {_fmt_seconds(seconds)}: {_failed_text(why, cause, log_path)}"
            )
            outcomes.append(RunOutcome(name, "failed", seconds, f"{why}: {cause}" if cause else why))
            if options.fail_fast:
                break
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in ("done", "skipped", "failed", "planned")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    stream.write(f"{summary or 'nothing to do'} in {_fmt_seconds(time.monotonic() - progress.started)}\n")
    return outcomes


def _share_outcome(
    name: str, rc: int, seconds: float, log_path: Path, progress: Progress, index: int, options: LaunchOptions
) -> RunOutcome:
    """A machine other than 0 judges its share of a run by the exit code: the results are written
    by machine 0 (possibly after this machine's processes have exited)."""
    progress.durations.append(seconds)
    if rc == 0:
        progress.line(index, name, f"done in {_fmt_seconds(seconds)} (machine 0 writes the results)")
        return RunOutcome(name, "done", seconds)
    why = f"exit code {rc} on machine {options.machine_rank}"
    progress.line(index, name, f"FAILED in {_fmt_seconds(seconds)} ({why}; see {log_path})")
    return RunOutcome(name, "failed", seconds, why)


def _append_run_info(grid_dir: Path, member_dir: Path) -> None:
    """Give a grid member's folder the rows its one-pass run recorded at start-up (host, GPU,
    versions, checkpoint), appended as a run into that folder would append them."""
    for file in sorted(grid_dir.glob(RUN_INFO_GLOB)):
        with (member_dir / file.name).open("a", encoding="utf-8") as out:
            out.write(file.read_text(encoding="utf-8"))


def _run_grid(
    label: str,
    members: Sequence[ExperimentConfig],
    options: LaunchOptions,
    runner: Runner,
    progress: Progress,
    index: int,
    env: Mapping[str, str],
) -> list[RunOutcome]:
    """One lmms-eval run for all ``members`` (one prefill per request), scored per lr, fanned out
    into the members' own folders."""
    limit = options.effective_limit
    grid_dir = (options.output_root / GRID_RUNS / label).absolute()
    plan = build_plan(one_pass_config(label, members), options, grid_dir)
    score = (sys.executable, "-m", "lmms_vreason.lmms.grid_score", str(grid_dir))
    names = ", ".join(m.name for m in members)
    if options.dry_run:
        progress.stream.write(
            f"# {label}: one pass for {names}; writes {grid_dir}\n{plan.shell}\n{shlex.join(score)}\n"
        )
        return [RunOutcome(m.name, "planned", reason="one-pass lr grid") for m in members]
    log_path = options.log_path(grid_dir, label)
    progress.line(index + 1, label, f"running one pass for {len(members)} lrs ({names}; log {log_path})")
    if not options.keeps_books:  # machine 0 clears the folder, scores every lr and fans out
        start = time.monotonic()
        rc = runner(plan.command, log_path, env)
        seconds = time.monotonic() - start
        return [
            _share_outcome(m.name, rc, seconds / len(members), log_path, progress, index + offset, options)
            for offset, m in enumerate(members, start=1)
        ]
    if grid_dir.exists():  # a new pass: old per-lr results must not be mistaken for this one's
        shutil.rmtree(grid_dir)
    write_config_copy(plan.config, grid_dir)
    log_start = _log_size(log_path)
    start = time.monotonic()
    rc = runner(plan.command, log_path, env)
    if rc == 0 and read_results(grid_dir):
        rc = runner(score, log_path, env)
    seconds = time.monotonic() - start
    progress.durations.append(seconds)
    outcomes = []
    for offset, member in enumerate(members, start=1):
        member_dir = output_dir_for(member, options)
        source = grid_dir / GRID_DIR / f"lr{lr_label(float(member.lr))}"  # type: ignore[arg-type]
        before = frozenset(r.path for r in read_results(member_dir))
        if source.is_dir():
            shutil.copytree(source, member_dir, dirs_exist_ok=True)
            write_config_copy(member, member_dir)
            _append_run_info(grid_dir, member_dir)
        complete, reason = completion_status(member, member_dir, limit, ignore=before)
        if complete:
            progress.line(index + offset, member.name, f"done in one pass of {_fmt_seconds(seconds)}")
            outcomes.append(RunOutcome(member.name, "done", seconds / len(members)))
        else:
            why = f"exit code {rc}; {reason}" if rc else reason
            cause = failure_cause(log_path, log_start)
            progress.line(index + offset, member.name, f"FAILED: {_failed_text(why, cause, log_path)}")
            outcomes.append(
                RunOutcome(member.name, "failed", seconds / len(members), f"{why}: {cause}" if cause else why)
            )
    return outcomes


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog("run"),
        description=__doc__,
        epilog="Arguments after `--` go to lmms-eval unchanged, e.g. `-- --verbosity DEBUG`.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("configs", nargs="+", help="config files, directories or (quoted) globs")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run only configs whose name matches this fnmatch pattern, e.g. one lr of a grid "
        "(repeatable; default: all)",
    )
    parser.add_argument("--output-root", default="runs", help="folder holding one subfolder per config")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="accelerate", help="how to start lmms-eval")
    parser.add_argument(
        "--num-processes",
        type=int,
        default=None,
        help="data-parallel processes for accelerate, the total over all machines "
        "(default: visible GPUs x --num-machines)",
    )
    parser.add_argument(
        "--main-process-port", type=int, default=None, help="accelerate's --main_process_port"
    )
    parser.add_argument(
        "--num-machines",
        type=int,
        default=1,
        help="machines one lmms-eval run spans (accelerate's --num_machines; run the same command on each)",
    )
    parser.add_argument(
        "--machine-rank", type=int, default=0, help="this machine's rank (accelerate's --machine_rank)"
    )
    parser.add_argument(
        "--main-process-ip",
        default=None,
        help="machine 0's address, with --num-machines > 1 (accelerate's --main_process_ip)",
    )
    parser.add_argument(
        "--include-path",
        default="auto",
        help="lmms-eval --include_path for the task pack; 'auto': lmms_vreason.tasks; 'none': omit",
    )
    parser.add_argument(
        "--limit", type=float, default=None, help="lmms-eval --limit (testing only; part of resume)"
    )
    parser.add_argument(
        "--lmms-eval-bin", default=None, help="plain launcher's executable (default: this venv's lmms-eval)"
    )
    parser.add_argument(
        "--accelerate-bin", default=None, help="accelerate executable (default: this venv's accelerate)"
    )
    parser.add_argument(
        "--force", action="store_true", help="rerun configs whose results are already complete"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="stream lmms-eval's output (always in the log)"
    )
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failed config")
    parser.add_argument(
        "--grid-mode",
        choices=GRID_MODES,
        default="one-pass",
        help="lr grids: one lmms-eval run for all lrs (one prefill per request) or one run per lr",
    )
    return parser


def select(configs: Sequence[ExperimentConfig], patterns: Sequence[str]) -> list[ExperimentConfig]:
    """The configs whose name matches any of the fnmatch ``patterns`` (all without patterns)."""
    if not patterns:
        return list(configs)
    chosen = [c for c in configs if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]
    if not chosen:
        raise ConfigError(f"--only {' '.join(patterns)} matches none of the {len(configs)} configs")
    return chosen


def main(argv: Sequence[str] | None = None, *, runner: Runner | None = None) -> int:
    """CLI entry point; returns 0 when every config is done or skipped, 1 on a failure, 2 on bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = build_parser()
    args = parser.parse_args(argv)
    include = args.include_path
    if include == "auto":
        # The plugin registers the task pack itself (task_registry de-duplicates this path); passing
        # it anyway keeps a launch working should that hook not run, at no cost.
        include = str(task_dir())
    elif include.lower() == "none":
        include = None
    try:
        configs = select(load_configs(args.configs), args.only)
        options = LaunchOptions(
            output_root=Path(args.output_root),
            launcher=args.launcher,
            num_processes=(
                args.num_processes
                if args.num_processes is not None
                else detect_num_gpus() * args.num_machines
            ),
            main_process_port=args.main_process_port,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            main_process_ip=args.main_process_ip,
            include_path=include,
            limit=args.limit,
            extra_args=tuple(extra),
            lmms_eval_bin=args.lmms_eval_bin or console_script("lmms-eval"),
            accelerate_bin=args.accelerate_bin or console_script("accelerate"),
            force=args.force,
            dry_run=args.dry_run,
            verbose=args.verbose,
            fail_fast=args.fail_fast,
            grid_mode=args.grid_mode,
        )
        for config in configs:  # a config the launch cannot run fails here, before anything runs
            build_plan(config, options)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    outcomes = run_configs(configs, options, runner=runner)
    return 1 if any(o.status == "failed" for o in outcomes) else 0
