"""Run arguments: the V-Reason hyperparameters and the backend's model arguments.

One place defines every argument the ``qwen2_5_vl_vreason`` backend accepts, its type and default, so
that the backend, the README table, config validation (``model_configs/``) and the launcher agree.
Validation needs no model and no torch import, so a bad config fails before anything loads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Objective = Literal["switch", "min_entropy", "max_entropy"]
NormScope = Literal["block", "head", "token"]


class ArgumentError(ValueError):
    """A model argument is unknown, ill-typed or out of range. Raised before any model loads."""


@dataclass(frozen=True, kw_only=True)
class VReasonConfig:
    """Hyperparameters of the V-Reason controller (SPEC §1, §2).

    ``enabled=False`` turns the controller off; with ``lite`` on as well, the cache is still pruned
    (that combination is ``prune_only``, the Table 8 ablation).
    """

    enabled: bool = True
    step_size: int = 4
    lr: float = 3e-4
    ema_beta: float = 0.98
    grad_clip: float = 1.0
    objective: Objective = "switch"
    norm_scope: NormScope = "block"
    lite: bool = False
    keep_ratio: float = 0.5
    prune_only: bool = False

    def __post_init__(self) -> None:
        if self.step_size < 1:
            raise ArgumentError(f"step_size must be >= 1, got {self.step_size}")
        if not self.lr > 0:
            raise ArgumentError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.ema_beta < 1.0:
            raise ArgumentError(f"ema_beta must be in [0, 1), got {self.ema_beta}")
        if not self.grad_clip > 0:
            raise ArgumentError(f"grad_clip must be > 0, got {self.grad_clip}")
        if self.objective not in get_args(Objective):
            raise ArgumentError(f"objective must be one of {get_args(Objective)}, got {self.objective!r}")
        if self.norm_scope not in get_args(NormScope):
            raise ArgumentError(f"norm_scope must be one of {get_args(NormScope)}, got {self.norm_scope!r}")
        if not 0.0 < self.keep_ratio <= 1.0:
            raise ArgumentError(f"keep_ratio must be in (0, 1], got {self.keep_ratio}")
        if self.prune_only and self.enabled:
            raise ArgumentError("prune_only=true runs no controller: set vreason=false (or drop prune_only)")
        if self.prune_only and not self.lite:
            raise ArgumentError("prune_only=true needs lite=true (it is pruning without the controller)")

    @property
    def prunes(self) -> bool:
        """Whether the KV cache is pruned after prefill (V-Reason Lite or pruning-only)."""
        return self.lite

    @property
    def controls(self) -> bool:
        """Whether the value-cache controller runs."""
        return self.enabled


@dataclass(frozen=True)
class ArgSpec:
    """One model argument: its type, default and what it does (the README table is built from this)."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] = ()
    aliases: tuple[str, ...] = ()


_VR_DEFAULTS = VReasonConfig()

MODEL_ARGS: tuple[ArgSpec, ...] = (
    ArgSpec("pretrained", str, "Qwen/Qwen2.5-VL-7B-Instruct", "HF id or local dir of a Qwen2.5-VL model"),
    ArgSpec("device", str, "cuda", "device for the model and inputs (cuda, cuda:N, cpu)"),
    ArgSpec("device_map", str, None, "accelerate device map; 'auto' shards a large model over all GPUs"),
    ArgSpec(
        "attn_implementation",
        str,
        None,
        "attention kernel",
        choices=(None, "sdpa", "eager", "flash_attention_2"),
    ),
    ArgSpec(
        "dtype", str, "bfloat16", "model weights dtype", choices=("bfloat16", "float16", "float32", "float64")
    ),
    ArgSpec("max_pixels", int, 128 * 28 * 28, "max pixels per video frame (paper: 128*28*28 or 256*28*28)"),
    ArgSpec("min_pixels", int, 16 * 28 * 28, "min pixels per video frame"),
    ArgSpec(
        "nframes",
        int,
        32,
        "frames sampled uniformly per video (paper: 32 or 16)",
        aliases=("max_num_frames",),
    ),
    ArgSpec(
        "fps", float, None, "sample frames at this rate instead of a fixed count (not the paper's protocol)"
    ),
    ArgSpec("system_prompt", str, None, "system prompt; default: the chat template's own"),
    ArgSpec(
        "batch_size",
        int,
        1,
        "requests decoded together, each with its own ΔV and optimiser (CLI: `--batch_size`)",
    ),
    ArgSpec("seed", int, 0, "seed of the sampler's random generator (reset per request for reproducibility)"),
    ArgSpec("vreason", bool, _VR_DEFAULTS.enabled, "run the value-cache controller"),
    ArgSpec("step_size", int, _VR_DEFAULTS.step_size, "optimise every k-th decoded token (k)"),
    ArgSpec("lr", float, _VR_DEFAULTS.lr, "AdamW learning rate of the controller"),
    ArgSpec("ema_beta", float, _VR_DEFAULTS.ema_beta, "EMA coefficient of the entropy (beta)"),
    ArgSpec("grad_clip", float, _VR_DEFAULTS.grad_clip, "max gradient norm of the controller update"),
    ArgSpec("objective", str, _VR_DEFAULTS.objective, "entropy objective", choices=get_args(Objective)),
    ArgSpec(
        "norm_scope",
        str,
        _VR_DEFAULTS.norm_scope,
        "scope of the norm kept by Eq. 1",
        choices=get_args(NormScope),
    ),
    ArgSpec(
        "lite", bool, _VR_DEFAULTS.lite, "V-Reason (Lite): prune low-value-norm video tokens after prefill"
    ),
    ArgSpec("keep_ratio", float, _VR_DEFAULTS.keep_ratio, "share of video tokens kept by Lite"),
    ArgSpec(
        "prune_only", bool, _VR_DEFAULTS.prune_only, "Lite pruning without controller or rescale (Table 8)"
    ),
    ArgSpec("telemetry", bool, False, "write per-sample entropy/EMA/alpha/timing rows as JSONL"),
    ArgSpec("telemetry_dir", str, None, "where telemetry JSONL goes; default: the run's --output_path"),
)

# Arguments lmms-eval itself passes to every backend (``additional_config``); accepted and ignored
# only when they carry no meaning here.
HOST_ARGS: frozenset[str] = frozenset({"max_batch_size"})
CLI_CONFIG_KEYS: frozenset[str] = frozenset({"batch_size", "max_batch_size", "device"})
"""What lmms-eval's command line passes to every backend itself (``--batch_size``, ...)."""

_BY_NAME: dict[str, ArgSpec] = {spec.name: spec for spec in MODEL_ARGS}
_ALIASES: dict[str, str] = {alias: spec.name for spec in MODEL_ARGS for alias in spec.aliases}


def merge_host_config(model_args: dict[str, Any], host_config: dict[str, Any]) -> dict[str, Any]:
    """``--model_args`` plus what lmms-eval passes itself (``--batch_size``, ``--device``, ...).

    lmms-eval always passes ``batch_size`` (default 1), so the same key in ``--model_args`` would
    otherwise die in a bare ``TypeError``; name the option to use instead.
    """
    host = {k: v for k, v in host_config.items() if v is not None}
    clashes = sorted(set(model_args) & set(host))
    if clashes:
        options = ", ".join(f"--{k}" for k in clashes)
        raise ArgumentError(
            f"{', '.join(clashes)}: set with lmms-eval's {options} on the command line, not in --model_args"
        )
    return {**model_args, **host}


def valid_argument_names() -> list[str]:
    """Every accepted model argument name, aliases included, sorted."""
    return sorted([*_BY_NAME, *_ALIASES])


def _coerce(spec: ArgSpec, value: Any) -> Any:
    if value is None:
        return None
    if spec.type is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
            return value.lower() in {"true", "1", "yes", "on"}
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    elif spec.type is int:
        if isinstance(value, bool):
            pass
        elif isinstance(value, int):
            return value
        elif isinstance(value, float) and value.is_integer():
            return int(value)
        elif isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif spec.type is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif spec.type is str:
        return str(value)
    raise ArgumentError(f"model argument {spec.name}={value!r} is not a valid {spec.type.__name__}")


@dataclass(frozen=True, kw_only=True)
class BackendArgs:
    """Validated model arguments of the ``qwen2_5_vl_vreason`` backend."""

    values: Mapping[str, Any] = field(default_factory=dict)
    vreason: VReasonConfig = field(default_factory=VReasonConfig)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


def parse_model_args(raw: Mapping[str, Any]) -> BackendArgs:
    """Validate and type the backend's model arguments; unknown names fail naming the valid ones.

    ``raw`` is what lmms-eval passes to the constructor (``--model_args`` parsed, plus its
    ``batch_size``/``device``/``max_batch_size``), or a ``model_args`` mapping from a config file.
    """
    unknown = sorted(k for k in raw if k not in _BY_NAME and k not in _ALIASES and k not in HOST_ARGS)
    if unknown:
        raise ArgumentError(
            f"unknown model argument(s) {', '.join(unknown)} for qwen2_5_vl_vreason; "
            f"valid: {', '.join(valid_argument_names())}"
        )
    values: dict[str, Any] = {spec.name: spec.default for spec in MODEL_ARGS}
    seen_from: dict[str, str] = {}
    for key, value in raw.items():
        if key in HOST_ARGS:
            continue
        name = _ALIASES.get(key, key)
        if name in seen_from:
            raise ArgumentError(f"model arguments {seen_from[name]} and {key} set the same thing ({name})")
        seen_from[name] = key
        spec = _BY_NAME[name]
        coerced = _coerce(spec, value)
        if spec.choices and coerced not in spec.choices:
            raise ArgumentError(f"model argument {key}={value!r} must be one of {spec.choices}")
        values[name] = coerced
    if values["batch_size"] is None or values["batch_size"] < 1:
        raise ArgumentError(f"batch_size must be >= 1, got {values['batch_size']}")
    if values["nframes"] is not None and values["fps"] is not None and "nframes" in seen_from:
        raise ArgumentError("set either nframes (max_num_frames) or fps, not both")
    if values["fps"] is not None:
        values["nframes"] = None
    if values["nframes"] is not None and values["nframes"] < 2:
        raise ArgumentError(f"nframes must be >= 2, got {values['nframes']}")
    if values["min_pixels"] > values["max_pixels"]:
        raise ArgumentError(f"min_pixels ({values['min_pixels']}) > max_pixels ({values['max_pixels']})")
    vreason = VReasonConfig(
        enabled=values["vreason"],
        step_size=values["step_size"],
        lr=values["lr"],
        ema_beta=values["ema_beta"],
        grad_clip=values["grad_clip"],
        objective=values["objective"],
        norm_scope=values["norm_scope"],
        lite=values["lite"],
        keep_ratio=values["keep_ratio"],
        prune_only=values["prune_only"],
    )
    return BackendArgs(values=values, vreason=vreason)


def vreason_field_names() -> list[str]:
    """Field names of :class:`VReasonConfig` (for documentation and tests)."""
    return [f.name for f in dataclasses.fields(VReasonConfig)]


def model_args_markdown() -> str:
    """The README's table of model arguments (a test keeps the README equal to this)."""
    rows = ["| argument | default | what it does |", "|---|---|---|"]
    for spec in MODEL_ARGS:
        names = " / ".join(f"`{n}`" for n in (spec.name, *spec.aliases))
        default = (
            "—"
            if spec.default is None
            else str(spec.default).lower()
            if isinstance(spec.default, bool)
            else spec.default
        )
        choices = [str(c) for c in spec.choices if c is not None]
        extra = f" ({', '.join(choices)})" if choices else ""
        rows.append(f"| {names} | `{default}` | {spec.help}{extra} |")
    return "\n".join(rows) + "\n"
