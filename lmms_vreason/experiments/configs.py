"""Experiment configs (``model_configs/*.yaml``): one file per paper setting or lr grid, validated up front.

A config names the backend, its model arguments, the tasks and optional generation overrides, and
records which table/row of the paper it reproduces together with the paper's numbers for it. The
launcher turns a config into one lmms-eval run; the collation tool turns the run folders back into
the paper's tables. The schema is declarative (a frozen pydantic dataclass); model arguments are
checked by the backend's own schema (:func:`lmms_vreason.lmms.args.parse_model_args`) and generation
overrides by :class:`lmms_vreason.core.settings.GenerationSettings`, so each rule is written once.
Nothing here imports torch or lmms-eval: a typo in a config fails in milliseconds, naming the file
and the key, instead of after a model has loaded.

Schema (see ``model_configs/README.md``)::

    name: t1-7b-32f128-lite               # required; equals the file stem; names the output dir
    reproduces: "Table 1: ..."            # required; the table/row/figure point this run stands for
    paper: {mmvu: 65.0, avg: 51.4, ...}   # paper's numbers (percent); keys of TABLE1_COLUMNS, avg, avg_wo_mra
    model: qwen2_5_vl_vreason             # optional; a V-Reason backend (qwen3_vl_vreason, qwen3_5_vreason, ...)
    model_args: {pretrained: ..., ...}    # checked by lmms_vreason.lmms.args.parse_model_args
    tasks: [mmvu, ...]                    # task names of lmms_vreason.benchmarks
    gen_kwargs: {temperature: 0.3, ...}   # optional overrides of the tasks' generation settings
    lr_grid: [5.0e-5, 1.0e-4, ...]        # optional; one run per lr, reported as "best over lr grid"
    baseline: t1-7b-32f128-base           # optional; default row the collation compares against
    notes: "..."                          # optional free text (choices where the paper is silent)

An ``lr_grid`` file expands at load into one :class:`ExperimentConfig` per lr, named
``<name>-lr<lr>`` (``t1-7b-32f128-lite-lr1.5e-4``), with ``model_args.lr`` set and
``lr_grid_group: <name>``. The members are copies of one definition, so they cannot differ in
anything but the lr. ``lr_grid_group`` itself is never written in a config file; it appears in the
expanded configs and in the config copy the launcher stores in each run folder.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import glob
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

import yaml
from pydantic import (
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass

from lmms_vreason.benchmarks import (
    AVG_METRIC,
    AVG_WO_MRA_METRIC,
    GROUP_TASK,
    TABLE1_COLUMNS,
    VSI_GROUP_TASK,
)
from lmms_vreason.core.settings import GenerationSettings, lr_label
from lmms_vreason.lmms.args import (
    BACKEND_NAME,
    BACKEND_NAMES,
    CLI_CONFIG_KEYS,
    ArgumentError,
    BackendArgs,
    parse_model_args,
)

DEFAULT_MODEL = BACKEND_NAME
CONFIG_COPY_NAME = "vreason_experiment.yaml"
"""The config, as run, stored in its output folder (read back by the collation tool)."""
CONFIG_DIR_NAME = "model_configs"
"""The folder of the paper's configs; a bare config name (``t1-7b-32f128-base``) is looked up there."""

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

MODEL_ARG_VALIDATORS = MappingProxyType(
    {backend: functools.partial(parse_model_args, backend=backend) for backend in BACKEND_NAMES}
)
"""Backends whose model arguments can be checked before launch (the only ones a config may name):
the V-Reason backend of every model family."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_ARG_FORBIDDEN = re.compile(r"[,=\s]")

Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False, strict=True)]
LearningRate = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
_LR_GRID: TypeAdapter[list[float]] = TypeAdapter(Annotated[list[LearningRate], Field(min_length=1)])


class ConfigError(ValueError):
    """A config file is malformed: unknown or missing key, bad value, impossible combination."""


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


def _survive_arg_string(what: str, values: Mapping[str, Any]) -> Mapping[str, Any]:
    """lmms-eval passes model args and gen kwargs as ``k=v,k=v`` strings: only scalars without
    ``,`` ``=`` or spaces come back unchanged (a list, say, would be split or mangled silently)."""
    for key, value in values.items():
        scalar = value is None or isinstance(value, (bool, int, float, str))
        if not scalar or (isinstance(value, str) and _ARG_FORBIDDEN.search(value)):
            flag = "--model_args" if what == "model_args" else "--gen_kwargs"
            raise ValueError(
                f"{what} {key}={value!r} cannot go through {flag} (k=v,k=v): use a scalar without , = or spaces"
            )
    return values


@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class ExperimentConfig:
    """One paper setting: what to run (backend, args, tasks, sampling) and what it should reproduce.

    Frozen and validated on construction, so an instance is always launchable: the launcher and
    the collation tool never re-check what they are handed.
    """

    name: str
    reproduces: str
    paper: Mapping[str, Percent] = dataclasses.field(default_factory=dict)
    model: str = DEFAULT_MODEL
    model_args: Mapping[str, Any]
    tasks: tuple[str, ...]
    gen_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    lr_grid_group: str | None = None
    baseline: str | None = None
    notes: str | None = None
    source: Path | None = dataclasses.field(default=None, compare=False)

    @field_validator("name", "lr_grid_group", "baseline")
    @classmethod
    def _folder_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not _NAME_RE.match(value):
            raise ValueError(
                f"{info.field_name} {value!r} must be a non-empty [A-Za-z0-9._+-] name (a folder name)"
            )
        return value

    @field_validator("reproduces")
    @classmethod
    def _says_what(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("reproduces must say which table/row/figure this config stands for")
        return value

    @field_validator("model")
    @classmethod
    def _checkable_backend(cls, value: str) -> str:
        if value not in MODEL_ARG_VALIDATORS:
            raise ValueError(
                f"model {value!r} is not supported; valid: {', '.join(sorted(MODEL_ARG_VALIDATORS))}"
            )
        return value

    @field_validator("paper", "model_args", "gen_kwargs", mode="before")
    @classmethod
    def _blank_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("paper", mode="before")
    @classmethod
    def _paper_keys(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            unknown = sorted(str(k) for k in value if k not in PAPER_KEYS)
            if unknown:
                raise ValueError(f"unknown paper key(s) {', '.join(unknown)}; valid: {', '.join(PAPER_KEYS)}")
        return value

    @field_validator("tasks", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return [t.strip() for t in value.split(",") if t.strip()] if isinstance(value, str) else value

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("tasks must be a non-empty list of task names")
        unknown = sorted(t for t in value if t not in KNOWN_TASKS)
        if unknown:
            raise ValueError(f"unknown task(s) {', '.join(unknown)}; valid: {', '.join(sorted(KNOWN_TASKS))}")
        if len(set(value)) != len(value):
            raise ValueError(f"tasks lists a task twice: {list(value)}")
        return value

    @field_validator("gen_kwargs")
    @classmethod
    def _generation_settings(cls, value: Mapping[str, Any]) -> Mapping[str, Any]:
        """What the backend would reject mid-run (after the model loaded) fails here, by its own rules."""
        _survive_arg_string("gen_kwargs", value)
        try:
            GenerationSettings.from_gen_kwargs(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"gen_kwargs: {exc}") from None
        return MappingProxyType(dict(value))

    @field_validator("paper", "model_args")
    @classmethod
    def _frozen(cls, value: Mapping[str, Any]) -> Mapping[str, Any]:
        # A loaded config cannot drift from what was validated.
        return MappingProxyType(dict(value))

    @model_validator(mode="after")
    def _model_args_valid(self) -> ExperimentConfig:
        _survive_arg_string("model_args", self.model_args)
        on_cli = sorted(set(self.model_args) & CLI_CONFIG_KEYS)
        if on_cli:
            options = " ".join(f"--{k} ..." for k in on_cli)
            raise ValueError(
                f"model_args {', '.join(on_cli)}: lmms-eval sets these from its command line; "
                f"drop them here and pass `vreason run ... -- {options}`"
            )
        try:
            args = MODEL_ARG_VALIDATORS[self.model](self.model_args)
        except ArgumentError as exc:
            raise ValueError(f"model_args: {exc}") from None
        if self.lr_grid_group is not None and not args.vreason:
            raise ValueError("lr_grid_group needs vreason=true (the lr only matters to the controller)")
        if self.baseline == self.name:
            raise ValueError("baseline names the config itself")
        return self

    @property
    def backend_args(self) -> BackendArgs:
        """The typed model arguments (defaults filled in), as the backend will see them."""
        return MODEL_ARG_VALIDATORS[self.model](self.model_args)

    @property
    def leaf_tasks(self) -> tuple[str, ...]:
        """Tasks whose results a complete run holds (groups expanded), in order, without repeats."""
        return tuple(dict.fromkeys(leaf for task in self.tasks for leaf in GROUP_MEMBERS.get(task, (task,))))

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
        """The paper's ``#F/px`` label, e.g. ``32/128`` for at most 32 frames (Video-R1's sampling) at
        128*28*28 max pixels; a fixed frame count reads ``8fixed/128``."""
        args = self.backend_args
        frames = f"{args.nframes}fixed" if args.nframes is not None else args.max_frames
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


_FIELDS = tuple(f for f in dataclasses.fields(ExperimentConfig) if f.name != "source")
TOP_LEVEL_KEYS: tuple[str, ...] = (*(f.name for f in _FIELDS), "lr_grid")
REQUIRED_KEYS: tuple[str, ...] = tuple(
    f.name for f in _FIELDS if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
)
_CONFIG = TypeAdapter(ExperimentConfig)


def _where(source: Path | None) -> str:
    return f"{source}: " if source is not None else ""


def _unknown_keys(keys: Iterable[Any]) -> str:
    return f"unknown top-level key(s) {', '.join(sorted(map(str, keys)))}; valid: {', '.join(TOP_LEVEL_KEYS)}"


def _config_error(error: ValidationError, where: str) -> ConfigError:
    """One line per problem, naming the key: pydantic's errors in the words of this schema."""
    unknown, missing, problems = [], [], []
    for item in error.errors(include_url=False):
        loc, kind = item["loc"], item["type"]
        if kind in ("unexpected_keyword_argument", "extra_forbidden") and len(loc) == 1:
            unknown.append(loc[0])
        elif kind in ("missing", "missing_argument", "missing_keyword_only_argument") and len(loc) == 1:
            missing.append(str(loc[0]))
        elif kind == "value_error":  # our validators' messages name their key themselves
            problems.append(item["msg"].removeprefix("Value error, "))
        else:
            key = " ".join([str(loc[0]), ".".join(str(p) for p in loc[1:])]).strip() if loc else "config"
            problems.append(f"{key}={item['input']!r}: {item['msg']}")
    parts = [_unknown_keys(unknown)] if unknown else []
    if missing:
        parts.append(f"missing required key(s) {', '.join(missing)}")
    return ConfigError(where + "; ".join(parts + problems))


def config_from_mapping(data: Any, *, source: Path | None = None) -> ExperimentConfig:
    """Validate one config (parsed YAML, or a run folder's config copy); errors name the key."""
    where = _where(source)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}a config must be a YAML mapping, got {type(data).__name__}")
    if "source" in data:
        raise ConfigError(where + _unknown_keys(["source"]))
    if "lr_grid" in data:
        raise ConfigError(
            f"{where}an lr_grid expands into several configs: load it with configs_from_mapping"
        )
    try:
        return _CONFIG.validate_python({**data, "source": source})
    except ValidationError as exc:
        raise _config_error(exc, where) from None


def configs_from_mapping(data: Any, *, source: Path | None = None) -> list[ExperimentConfig]:
    """The configs one file defines: itself, or one per lr of its ``lr_grid`` (in the grid's order).

    The grid's own fields are validated once, as one config named after the grid; each member is
    that config with ``model_args.lr`` set, so members cannot differ in anything but the lr.
    """
    if not isinstance(data, Mapping) or "lr_grid" not in data:
        return [config_from_mapping(data, source=source)]
    where = _where(source)
    template_data = {k: v for k, v in data.items() if k != "lr_grid"}
    try:
        lrs = _LR_GRID.validate_python(data["lr_grid"])
    except ValidationError as exc:
        raise ConfigError(
            f"{where}lr_grid must be a non-empty list of positive learning rates: "
            + "; ".join(
                f"lr_grid{''.join(f'[{i}]' for i in e['loc'])}={e['input']!r}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
        ) from None
    if "lr_grid_group" in template_data:
        raise ConfigError(f"{where}lr_grid_group is set by lr_grid (to the config's name); drop it")
    model_args = template_data.get("model_args")
    if isinstance(model_args, Mapping) and "lr" in model_args:
        raise ConfigError(
            f"{where}model_args lr={model_args['lr']!r} next to lr_grid: the grid sets each member's lr; drop it"
        )
    template = config_from_mapping(template_data, source=source)
    if not template.backend_args.vreason:
        raise ConfigError(f"{where}lr_grid needs vreason=true (the lr only matters to the controller)")
    seen: dict[str, float] = {}
    for lr in lrs:
        label = lr_label(lr)
        if label in seen:
            raise ConfigError(f"{where}lr_grid lists lr {label} twice (members must differ in their lr)")
        seen[label] = lr
    try:
        return [
            dataclasses.replace(
                template,
                name=f"{template.name}-lr{label}",
                reproduces=f"{template.reproduces}; this member lr={label}",
                model_args={**template.model_args, "lr": lr},
                lr_grid_group=template.name,
            )
            for label, lr in seen.items()
        ]
    except ValidationError as exc:
        raise _config_error(exc, where) from None


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc


def load_config_file(path: str | Path) -> list[ExperimentConfig]:
    """Read and validate one config file (one config, or an lr grid's members).

    Its ``name`` must equal the file stem (no two truths). ``lr_grid_group`` is refused here: a
    grid is written as ``lr_grid``, so hand-made members that could drift apart cannot exist.
    """
    path = Path(path)
    data = _read_yaml(path)
    if isinstance(data, Mapping) and "lr_grid_group" in data:
        raise ConfigError(
            f"{path}: lr_grid_group is not written in a config file; list the learning rates as "
            "lr_grid: [...] in one file instead"
        )
    configs = configs_from_mapping(data, source=path)
    name = configs[0].lr_grid_group or configs[0].name
    if path.suffix in (".yaml", ".yml") and name != path.stem:
        raise ConfigError(f"{path}: name {name!r} must equal the file name stem {path.stem!r}")
    return configs


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a file holding one config (not an lr grid)."""
    configs = load_config_file(path)
    if len(configs) != 1 or configs[0].lr_grid_group is not None:
        raise ConfigError(f"{path}: holds an lr grid of {len(configs)} configs; use load_configs")
    return configs[0]


def config_dirs() -> list[Path]:
    """Where a bare config name is looked up: ``./model_configs``, then this checkout's own
    ``model_configs/`` (an editable install run from another folder)."""
    candidates = [Path(CONFIG_DIR_NAME), Path(__file__).resolve().parents[2] / CONFIG_DIR_NAME]
    found: dict[Path, Path] = {}
    for folder in candidates:
        if folder.is_dir():
            found.setdefault(folder.resolve(), folder)
    return list(found.values())


def _is_bare_name(text: str) -> bool:
    """A config's name (or a name pattern), not a path: no folder part and no YAML suffix."""
    return "/" not in text and "\\" not in text and not text.endswith((".yaml", ".yml"))


def _matches(text: str) -> list[Path]:
    """The files ``text`` names as a path, folder or glob; else, for a bare name or name pattern
    (``t1-7b-32f128-base``, ``t1-7b-*``), the configs of that name in :func:`config_dirs`."""
    path = Path(text)
    if path.is_dir():
        return sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
    if glob.has_magic(text):
        found = sorted(Path(p) for p in glob.glob(text, recursive=True) if p.endswith((".yaml", ".yml")))
    else:
        found = [path] if path.exists() else []
    if not found and _is_bare_name(text):
        for folder in config_dirs():
            found = sorted(folder.glob(f"{text}.yaml"))
            if found:
                break
    return found


def _grid_member(text: str) -> tuple[Path, str] | None:
    """``(grid file, run name)`` when ``text`` is the bare name of one lr-grid run
    (``t1-7b-32f128-lite-lr1.5e-4`` -> ``model_configs/t1-7b-32f128-lite.yaml``)."""
    match = re.fullmatch(r"(.+)-lr[^/]+", text)
    if not match or not _is_bare_name(text) or glob.has_magic(text):
        return None
    for folder in config_dirs():
        grid = folder / f"{match.group(1)}.yaml"
        if grid.is_file():
            return grid, text
    return None


def _no_match(text: str) -> ConfigError:
    if not _is_bare_name(text):
        return ConfigError(f"no config file matches {text!r}")
    folders = config_dirs()
    names = sorted({p.stem for folder in folders for p in folder.glob("*.yaml")})
    close = difflib.get_close_matches(text, names, n=3, cutoff=0.6)
    where = " or ".join(f"{folder}/" for folder in folders) or f"./{CONFIG_DIR_NAME}/ (none here)"
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigError(
        f"no config file matches {text!r}: not a file, folder or glob, and no config of that name in "
        f"{where}{hint}"
    )


def resolve_config_paths(patterns: Iterable[str | Path]) -> list[Path]:
    """Expand files, directories (their ``*.yaml``), globs and bare config names (looked up in
    :func:`config_dirs`); sorted, de-duplicated; none missing."""
    found: list[Path] = []
    for pattern in patterns:
        text = str(pattern)
        matches = _matches(text)
        if not matches:
            raise _no_match(text)
        found.extend(matches)
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path.resolve(), None)
    return list(unique)


def check_config_set(configs: Sequence[ExperimentConfig]) -> None:
    """Checks that need the whole set: config names are unique and no grid is named like a config.

    Both would make two rows of the collated table (or two output folders) one.
    """
    by_name: dict[str, ExperimentConfig] = {}
    for config in configs:
        if config.name in by_name:
            raise ConfigError(
                f"two configs are named {config.name!r}: {by_name[config.name].source} and {config.source}"
            )
        by_name[config.name] = config
    for config in configs:
        if config.lr_grid_group is not None and config.lr_grid_group in by_name:
            raise ConfigError(f"lr_grid_group {config.lr_grid_group!r} is also a config name")


def load_configs(patterns: Iterable[str | Path]) -> list[ExperimentConfig]:
    """Load every config the patterns name (grids expanded) and check the set; raises on the first problem."""
    wanted: dict[Path, set[str] | None] = {}  # file -> the runs asked for (None: all of them)
    for pattern in patterns:
        text = str(pattern)
        member = _grid_member(text) if not _matches(text) else None
        if member is not None:
            grid, name = member
            key = grid.resolve()
            if key not in wanted or wanted[key] is not None:
                wanted.setdefault(key, set()).add(name)  # type: ignore[union-attr]
            continue
        for path in resolve_config_paths([text]):
            wanted[path] = None
    configs = []
    for path, names in wanted.items():
        loaded = load_config_file(path)
        if names is not None:
            unknown = sorted(names - {c.name for c in loaded})
            if unknown:
                runs = ", ".join(c.name for c in loaded)
                raise ConfigError(f"{path} has no run named {', '.join(unknown)}; its runs: {runs}")
            loaded = [c for c in loaded if c.name in names]
        configs += loaded
    check_config_set(configs)
    return configs


def write_config_copy(config: ExperimentConfig, run_dir: Path) -> Path:
    """Store the config beside its results, so a run folder explains itself to the collation tool."""
    path = run_dir / CONFIG_COPY_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def read_config_copy(run_dir: Path) -> ExperimentConfig | None:
    """The config copy of a run folder; None when it has none. A broken copy raises :class:`ConfigError`."""
    path = run_dir / CONFIG_COPY_NAME
    if not path.is_file():
        return None
    return config_from_mapping(_read_yaml(path), source=path)
