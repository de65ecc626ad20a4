"""Experiment configs (``model_configs/*.yaml``): one file per paper setting, validated up front.

A config names the backend, its model arguments, the tasks and optional generation overrides, and
records which table/row of the paper it reproduces together with the paper's numbers for it. The
launcher turns a config into one lmms-eval run; the collation tool turns the run folders back into
the paper's tables. Everything here is checked without importing torch or lmms-eval, so a typo in a
config fails in milliseconds, naming the key, instead of after a model has loaded.

Schema (see ``model_configs/README.md``)::

    name: t1-7b-32f128-lite-lr3e-4        # required; equals the file stem; names the output dir
    reproduces: "Table 1: ..."            # required; the table/row/figure point this run stands for
    paper: {mmvu: 65.0, avg: 51.4, ...}   # paper's numbers (percent); keys of TABLE1_COLUMNS, avg, avg_wo_mra
    model: qwen2_5_vl_vreason             # optional; the only backend validated here
    model_args: {pretrained: ..., ...}    # checked by lmms_vreason.lmms.args.parse_model_args
    tasks: [mmvu, ...]                    # task names of lmms_vreason.benchmarks
    gen_kwargs: {temperature: 0.3, ...}   # optional overrides of the tasks' generation settings
    lr_grid_group: t1-7b-32f128-lite      # optional; runs reported as "best over lr grid"
    baseline: t1-7b-32f128-base           # optional; default row the collation compares against
    notes: "..."                          # optional free text (choices where the paper is silent)
"""

from __future__ import annotations

import glob
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from lmms_vreason.benchmarks import (
    AVG_METRIC,
    AVG_WO_MRA_METRIC,
    GROUP_TASK,
    TABLE1_COLUMNS,
    VSI_GROUP_TASK,
)
from lmms_vreason.lmms.args import CLI_CONFIG_KEYS, ArgumentError, BackendArgs, parse_model_args

DEFAULT_MODEL = "qwen2_5_vl_vreason"

TOP_LEVEL_KEYS: tuple[str, ...] = (
    "name",
    "reproduces",
    "paper",
    "model",
    "model_args",
    "tasks",
    "gen_kwargs",
    "lr_grid_group",
    "baseline",
    "notes",
)
REQUIRED_KEYS: tuple[str, ...] = ("name", "reproduces", "model_args", "tasks")

PAPER_KEYS: tuple[str, ...] = (*(c.key for c in TABLE1_COLUMNS), AVG_METRIC, AVG_WO_MRA_METRIC)
"""Keys of a config's ``paper:`` block: the seven Table 1 columns and the two averages."""

LEAF_TASKS: tuple[str, ...] = tuple(c.task for c in TABLE1_COLUMNS)
GROUP_MEMBERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        GROUP_TASK: LEAF_TASKS,
        VSI_GROUP_TASK: tuple(c.task for c in TABLE1_COLUMNS if c.key.startswith("vsi_")),
    }
)
"""Groups a config may list, and the leaf tasks whose results make such a run complete."""

KNOWN_TASKS: frozenset[str] = frozenset((*LEAF_TASKS, *GROUP_MEMBERS))

# Generation keys the backend accepts through lmms-eval's ``--gen_kwargs`` (min_p / top_h are the
# transformers 5.x MinPLogitsWarper / TopHLogitsWarper). lmms-eval parses ``k=v,k=v`` strings, so
# every value must survive that round trip: numbers, booleans and comma-free strings only.
GEN_KWARGS_TYPES: Mapping[str, tuple[type, ...]] = MappingProxyType(
    {
        "temperature": (int, float),
        "top_p": (int, float),
        "top_k": (int,),
        "min_p": (int, float),
        "top_h": (int, float),
        "do_sample": (bool,),
        "max_new_tokens": (int,),
        "until": (str,),
    }
)

MODEL_ARG_VALIDATORS = MappingProxyType({DEFAULT_MODEL: parse_model_args})
"""Backends whose model arguments can be checked before launch (the only ones a config may name)."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_ARG_FORBIDDEN = re.compile(r"[,=\s]")


class ConfigError(ValueError):
    """A config file is malformed: unknown or missing key, bad value, impossible combination."""


def _where(source: Path | None) -> str:
    return f"{source}: " if source is not None else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_gen_kwargs(gen_kwargs: Mapping[str, Any], where: str) -> None:
    """Reject what the backend would reject mid-run (after the model loaded), naming the key."""
    unknown = sorted(k for k in gen_kwargs if k not in GEN_KWARGS_TYPES)
    if unknown:
        raise ConfigError(
            f"{where}unknown gen_kwargs key(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(GEN_KWARGS_TYPES))}"
        )
    for key, value in gen_kwargs.items():
        types = GEN_KWARGS_TYPES[key]
        if bool in types or str in types:
            ok = isinstance(value, types)
        elif float in types:
            ok = _is_number(value)
        else:
            ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok:
            raise ConfigError(
                f"{where}gen_kwargs {key}={value!r} must be {' or '.join(t.__name__ for t in types)}"
            )
    ranges = {
        "temperature": lambda v: v >= 0,
        "top_p": lambda v: 0 < v <= 1,
        "top_k": lambda v: v >= 0,
        "min_p": lambda v: 0 <= v <= 1,
        "top_h": lambda v: 0 < v <= 1,
        "max_new_tokens": lambda v: v >= 1,
    }
    for key, in_range in ranges.items():
        if key in gen_kwargs and not in_range(gen_kwargs[key]):
            raise ConfigError(f"{where}gen_kwargs {key}={gen_kwargs[key]!r} is out of range")
    if gen_kwargs.get("do_sample") is True and gen_kwargs.get("temperature") == 0:
        raise ConfigError(f"{where}gen_kwargs do_sample=true with temperature=0 is contradictory")
    until = gen_kwargs.get("until")
    if isinstance(until, str) and (not until or _ARG_FORBIDDEN.search(until)):
        raise ConfigError(
            f"{where}gen_kwargs until={until!r} must be one non-empty stop string without , = or spaces"
        )


def format_arg_value(value: Any) -> str:
    """Render one value for lmms-eval's ``k=v,k=v`` argument strings (which re-parse it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def format_arg_string(args: Mapping[str, Any]) -> str:
    """``{a: 1, b: true}`` -> ``a=1,b=true``, the form of ``--model_args`` / ``--gen_kwargs``."""
    return ",".join(f"{key}={format_arg_value(value)}" for key, value in args.items() if value is not None)


@dataclass(frozen=True)
class ExperimentConfig:
    """One paper setting: what to run (backend, args, tasks, sampling) and what it should reproduce.

    Frozen and validated in ``__post_init__`` so an instance is always launchable: the launcher and
    the collation tool never re-check what they are handed.
    """

    name: str
    reproduces: str
    model_args: Mapping[str, Any]
    tasks: tuple[str, ...]
    paper: Mapping[str, float] = field(default_factory=dict)
    model: str = DEFAULT_MODEL
    gen_kwargs: Mapping[str, Any] = field(default_factory=dict)
    lr_grid_group: str | None = None
    baseline: str | None = None
    notes: str | None = None
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        where = _where(self.source)
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ConfigError(
                f"{where}name {self.name!r} must be a non-empty [A-Za-z0-9._+-] string (a dir name)"
            )
        if not isinstance(self.reproduces, str) or not self.reproduces.strip():
            raise ConfigError(f"{where}reproduces must say which table/row/figure this config stands for")
        if self.model not in MODEL_ARG_VALIDATORS:
            raise ConfigError(
                f"{where}model {self.model!r} is not supported; "
                f"valid: {', '.join(sorted(MODEL_ARG_VALIDATORS))}"
            )
        if not isinstance(self.model_args, Mapping):
            raise ConfigError(f"{where}model_args must be a mapping")
        for key, value in self.model_args.items():
            if isinstance(value, (list, dict)) or (isinstance(value, str) and _ARG_FORBIDDEN.search(value)):
                raise ConfigError(
                    f"{where}model_args {key}={value!r} cannot go through --model_args (k=v,k=v)"
                )
        on_cli = sorted(set(self.model_args) & CLI_CONFIG_KEYS)
        if on_cli:
            options = " ".join(f"--{k} ..." for k in on_cli)
            raise ConfigError(
                f"{where}model_args {', '.join(on_cli)}: lmms-eval sets these from its command line; "
                f"drop them here and pass `run_configs.py ... -- {options}`"
            )
        try:
            MODEL_ARG_VALIDATORS[self.model](self.model_args)
        except ArgumentError as exc:
            raise ConfigError(f"{where}{exc}") from exc
        if not self.tasks or not all(isinstance(t, str) for t in self.tasks):
            raise ConfigError(f"{where}tasks must be a non-empty list of task names")
        unknown_tasks = sorted(t for t in self.tasks if t not in KNOWN_TASKS)
        if unknown_tasks:
            raise ConfigError(
                f"{where}unknown task(s) {', '.join(unknown_tasks)}; valid: {', '.join(sorted(KNOWN_TASKS))}"
            )
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"{where}tasks lists a task twice: {list(self.tasks)}")
        if not isinstance(self.paper, Mapping):
            raise ConfigError(f"{where}paper must be a mapping of column key -> number")
        unknown_paper = sorted(k for k in self.paper if k not in PAPER_KEYS)
        if unknown_paper:
            raise ConfigError(
                f"{where}unknown paper key(s) {', '.join(unknown_paper)}; valid: {', '.join(PAPER_KEYS)}"
            )
        for key, value in self.paper.items():
            if not _is_number(value) or not 0 <= value <= 100:
                raise ConfigError(f"{where}paper {key}={value!r} must be a number in [0, 100] (percent)")
        if not isinstance(self.gen_kwargs, Mapping):
            raise ConfigError(f"{where}gen_kwargs must be a mapping")
        _check_gen_kwargs(self.gen_kwargs, where)
        for key in ("lr_grid_group", "baseline"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not _NAME_RE.match(value)):
                raise ConfigError(f"{where}{key} {value!r} must be a [A-Za-z0-9._+-] name")
        if self.lr_grid_group is not None and not self.backend_args.vreason:
            raise ConfigError(
                f"{where}lr_grid_group needs vreason=true (the lr only matters to the controller)"
            )
        if self.baseline == self.name:
            raise ConfigError(f"{where}baseline names the config itself")
        if self.notes is not None and not isinstance(self.notes, str):
            raise ConfigError(f"{where}notes must be a string")
        # Freeze the mappings so a loaded config cannot drift from what was validated.
        object.__setattr__(self, "model_args", MappingProxyType(dict(self.model_args)))
        object.__setattr__(self, "paper", MappingProxyType({k: float(v) for k, v in self.paper.items()}))
        object.__setattr__(self, "gen_kwargs", MappingProxyType(dict(self.gen_kwargs)))
        object.__setattr__(self, "tasks", tuple(self.tasks))

    @property
    def backend_args(self) -> BackendArgs:
        """The typed model arguments (defaults filled in), as the backend will see them."""
        return MODEL_ARG_VALIDATORS[self.model](self.model_args)

    @property
    def leaf_tasks(self) -> tuple[str, ...]:
        """Tasks whose results a complete run holds (groups expanded), in order, without repeats."""
        out: list[str] = []
        for task in self.tasks:
            for leaf in GROUP_MEMBERS.get(task, (task,)):
                if leaf not in out:
                    out.append(leaf)
        return tuple(out)

    @property
    def model_args_string(self) -> str:
        return format_arg_string(self.model_args)

    @property
    def gen_kwargs_string(self) -> str:
        return format_arg_string(self.gen_kwargs)

    @property
    def model_parallel(self) -> bool:
        """True when the model is sharded over all GPUs (``device_map``): one process, not N."""
        return self.backend_args.device_map is not None

    @property
    def frames_px(self) -> str:
        """The paper's ``#F/px`` label, e.g. ``32/128`` for 32 frames at 128*28*28 max pixels."""
        args = self.backend_args
        frames = args.nframes if args.nframes is not None else f"{args.fps}fps"
        px = args.max_pixels / (28 * 28)
        return f"{frames}/{int(px) if px.is_integer() else round(px, 1)}"

    @property
    def lr(self) -> float | None:
        """The controller's learning rate, or None when no controller runs."""
        args = self.backend_args
        return args.lr if args.vreason else None

    def to_dict(self) -> dict[str, Any]:
        """Plain data in schema order (what the launcher stores beside the results)."""
        out: dict[str, Any] = {
            "name": self.name,
            "reproduces": self.reproduces,
            "paper": dict(self.paper),
            "model": self.model,
            "model_args": dict(self.model_args),
            "tasks": list(self.tasks),
        }
        if self.gen_kwargs:
            out["gen_kwargs"] = dict(self.gen_kwargs)
        for key in ("lr_grid_group", "baseline", "notes"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def config_from_mapping(data: Any, *, source: Path | None = None) -> ExperimentConfig:
    """Build a config from parsed YAML, rejecting unknown and missing top-level keys by name."""
    where = _where(source)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}a config must be a YAML mapping, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}unknown top-level key(s) {', '.join(unknown)}; valid: {', '.join(TOP_LEVEL_KEYS)}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ConfigError(f"{where}missing required key(s) {', '.join(missing)}")
    tasks = data["tasks"]
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    if not isinstance(tasks, list):
        raise ConfigError(f"{where}tasks must be a list of task names")
    return ExperimentConfig(
        name=data["name"],
        reproduces=data["reproduces"],
        paper=data.get("paper") or {},
        model=data.get("model") or DEFAULT_MODEL,
        model_args=data["model_args"] if data["model_args"] is not None else {},
        tasks=tuple(tasks),
        gen_kwargs=data.get("gen_kwargs") or {},
        lr_grid_group=data.get("lr_grid_group"),
        baseline=data.get("baseline"),
        notes=data.get("notes"),
        source=source,
    )


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate one config file; its ``name`` must equal the file stem (no two truths)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    config = config_from_mapping(data, source=path)
    if path.suffix in (".yaml", ".yml") and config.name != path.stem:
        raise ConfigError(f"{path}: name {config.name!r} must equal the file name stem {path.stem!r}")
    return config


def resolve_config_paths(patterns: Iterable[str | Path]) -> list[Path]:
    """Expand files, directories (their ``*.yaml``) and globs; sorted, de-duplicated; none missing."""
    found: list[Path] = []
    for pattern in patterns:
        text = str(pattern)
        path = Path(text)
        if path.is_dir():
            matches = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        elif glob.has_magic(text):
            matches = sorted(
                Path(p) for p in glob.glob(text, recursive=True) if p.endswith((".yaml", ".yml"))
            )
        else:
            matches = [path] if path.exists() else []
        if not matches:
            raise ConfigError(f"no config file matches {text!r}")
        found.extend(matches)
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path.resolve(), None)
    return list(unique)


def check_config_set(configs: Sequence[ExperimentConfig]) -> None:
    """Checks that need the whole set: unique names, and lr-grid groups that vary only the lr.

    A grid member that silently differed in another argument would make "best over lr grid" a
    selection over more than the learning rate, so that is an error here, not a surprise later.
    """
    by_name: dict[str, ExperimentConfig] = {}
    for config in configs:
        if config.name in by_name:
            raise ConfigError(
                f"two configs are named {config.name!r}: {by_name[config.name].source} and {config.source}"
            )
        by_name[config.name] = config
    groups: dict[str, list[ExperimentConfig]] = {}
    for config in configs:
        if config.lr_grid_group is not None:
            if config.lr_grid_group in by_name:
                raise ConfigError(f"lr_grid_group {config.lr_grid_group!r} is also a config name")
            groups.setdefault(config.lr_grid_group, []).append(config)
    for label, members in groups.items():
        first = members[0]
        reference = {k: v for k, v in first.backend_args.model_dump().items() if k != "lr"}
        seen_lrs: dict[float, str] = {}
        for member in members:
            values = {k: v for k, v in member.backend_args.model_dump().items() if k != "lr"}
            if (
                values != reference
                or member.tasks != first.tasks
                or dict(member.gen_kwargs) != dict(first.gen_kwargs)
            ):
                raise ConfigError(
                    f"lr_grid_group {label!r}: {member.name} differs from {first.name} in more than the lr"
                )
            if dict(member.paper) != dict(first.paper):
                raise ConfigError(
                    f"lr_grid_group {label!r}: {member.name} and {first.name} quote different paper numbers"
                )
            lr = member.backend_args.lr
            if lr in seen_lrs:
                raise ConfigError(
                    f"lr_grid_group {label!r}: {member.name} and {seen_lrs[lr]} both use lr={lr}"
                )
            seen_lrs[lr] = member.name


def load_configs(patterns: Iterable[str | Path]) -> list[ExperimentConfig]:
    """Load every config the patterns name and check the set; raises on the first problem."""
    configs = [load_config(path) for path in resolve_config_paths(patterns)]
    check_config_set(configs)
    return configs


def write_config_copy(config: ExperimentConfig, path: Path) -> None:
    """Store the config beside its results, so a run folder explains itself to the collation tool."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8")
