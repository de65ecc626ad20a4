"""The backend's model arguments (``--model_args``): one declarative schema, validated at start-up.

:class:`BackendArgs` is the V-Reason settings of the method (:class:`VReasonSettings`, same names
and defaults) plus what the lmms-eval backend needs to load a model and read videos. It is the one
definition the backend, the README's argument table, experiment configs (``model_configs/``) and the
launcher use. No torch import: a bad config fails in milliseconds, before anything loads.

Every model family's backend (``qwen2_5_vl_vreason``, ``qwen3_vl_vreason``, ``qwen2_vl_vreason``)
takes the same arguments with the same defaults, except the default checkpoint (``pretrained``);
:func:`args_schema` gives each backend its schema.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, get_args

from pydantic import AliasChoices, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from lmms_vreason.core.settings import VReasonSettings, validation_message
from lmms_vreason.media.protocol import (
    FPS,
    MAX_FRAMES,
    MIN_FRAMES,
    PIXEL_FACTOR,
    TEMPORAL_FACTOR,
    VIDEO_MAX_PIXELS,
    VIDEO_MIN_PIXELS,
    VIDEO_TOTAL_PIXELS,
    FrameSettings,
)
from lmms_vreason.models.families import DEFAULT_FAMILY, FAMILIES, family_of_backend

BACKEND_NAME = DEFAULT_FAMILY.backend
"""The default backend (``qwen2_5_vl_vreason``), whose schema is :class:`BackendArgs` itself."""
BACKEND_NAMES: tuple[str, ...] = tuple(family.backend for family in FAMILIES.values())
"""Every model family's V-Reason backend (lmms-eval model ids), the default first."""
_PRETRAINED_HELP = "HF id or local dir of a checkpoint of the backend's model family"

AttnImplementation = Literal["sdpa", "eager", "flash_attention_2"]
DType = Literal["bfloat16", "float16", "float32", "float64"]
StopTokens = Literal["generation_config", "tokenizer"]
"""Where the ids that end a response come from (docs/method.md §3, "Stop tokens")."""


class ArgumentError(ValueError):
    """A model argument is unknown, ill-typed or out of range. Raised before any model loads."""


class BackendArgs(VReasonSettings):
    """Validated model arguments of the ``qwen2_5_vl_vreason`` backend (the README table is built from this).

    The other families' backends use a subclass that only changes ``pretrained``'s default
    (:func:`args_schema`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)
    backend_name: ClassVar[str] = BACKEND_NAME

    pretrained: str = Field(DEFAULT_FAMILY.default_pretrained, description=_PRETRAINED_HELP)
    device: str = Field("cuda", description="device for the model and inputs (cuda, cuda:N, cpu)")
    device_map: str | None = Field(
        None, description="accelerate device map; 'auto' shards a large model over all GPUs"
    )
    attn_implementation: AttnImplementation | None = Field(None, description="attention kernel")
    dtype: DType = Field("bfloat16", description="model weights dtype")
    fps: float = Field(
        FPS,
        gt=0,
        description="frames sampled per second of video (Video-R1: 2), within [min_frames, max_frames]",
    )
    min_frames: int = Field(MIN_FRAMES, ge=1, description="fewest frames sampled from a clip (Video-R1: 4)")
    max_frames: int = Field(
        MAX_FRAMES,
        ge=2,
        validation_alias=AliasChoices("max_frames", "max_num_frames"),
        description="most frames sampled from a clip (paper: 32, or 16 with max_pixels=200704)",
    )
    nframes: int | None = Field(
        None,
        ge=2,
        description="instead of Video-R1's sampling, a fixed even count of evenly spaced frames (not the paper's protocol)",
    )
    max_pixels: int = Field(
        VIDEO_MAX_PIXELS,
        ge=1,
        description="per-frame max pixels (paper: 128*28*28, or 256*28*28 = 200704 with max_frames=16); "
        "the effective cap is max(min(max_pixels, total_pixels/n*2), int(1.05*min_pixels)); "
        "a visual token covers 28*28 pixels, 32*32 on Qwen3-VL",
    )
    min_pixels: int = Field(
        VIDEO_MIN_PIXELS,
        ge=1,
        description="per-frame min pixels, smaller frames are upscaled (Video-R1: 128*28*28 in both settings)",
    )
    total_pixels: int = Field(
        VIDEO_TOTAL_PIXELS,
        ge=1,
        description="pixel budget of a whole video (Video-R1's; binds above 900 frames)",
    )
    prefetch: Literal["auto", "true", "false"] = Field(
        "auto",
        description="read, resize and process the next batch's videos in a worker process while this "
        "batch decodes (same inputs, same per-sample media errors); auto: on when the model is on a GPU, "
        "off on the CPU, where the worker would take the decode loop's cores",
    )
    system_prompt: str | None = Field(None, description="system prompt; default: the chat template's own")
    enable_thinking: bool = Field(
        False,
        description="Qwen3.5 only: the chat template's native thinking mode; off: the template's non-thinking "
        "prompt and the task's own <think>/<answer> request is the protocol; on: the prompt opens a think "
        "block, the response keeps it and scoring reads the first <answer> after it",
    )
    stop_tokens: StopTokens = Field(
        "generation_config",
        description="which token ids end a response: every id of the checkpoint's "
        "generation_config.eos_token_id (Qwen2/2.5-VL: im_end and endoftext; where transformers' generate "
        "and Video-R1's vLLM stop), or the tokenizer's eos only (im_end; where lmms-eval's built-in "
        "backends stop)",
    )
    batch_size: int = Field(
        1,
        ge=1,
        description="requests decoded together, each with its own ΔV and optimiser (CLI: `--batch_size`)",
    )
    seed: int = Field(
        0, description="seed of the sampler's random generator (reset per request for reproducibility)"
    )
    compile: Literal["auto"] | bool = Field(
        "auto",
        description="torch.compile the decode step (CUDA graphs on CUDA); auto: on for CUDA, off for CPU, "
        "where compiling costs more than short runs save; a compile failure stops the run at start-up",
    )
    telemetry: bool = Field(False, description="write per-sample entropy/EMA/alpha/timing rows as JSONL")
    telemetry_dir: str | None = Field(
        None, description="where telemetry JSONL goes; default: the run's --output_path"
    )

    @field_validator("prefetch", mode="before")
    @classmethod
    def _switch_from_bool(cls, value: Any) -> Any:
        """lmms-eval's ``--model_args`` and YAML configs give ``true``/``false`` as booleans."""
        return str(value).lower() if isinstance(value, bool) else value

    @model_validator(mode="before")
    @classmethod
    def _known_names_once(cls, raw: Any) -> Any:
        """Unknown names fail naming the valid ones; two names for one argument are refused."""
        if not isinstance(raw, Mapping):
            return raw
        raw = {k: v for k, v in raw.items() if k not in HOST_ARGS}
        unknown = sorted(k for k in raw if k not in _NAME_OF)
        if unknown:
            raise ValueError(
                f"unknown model argument(s) {', '.join(unknown)} for {cls.backend_name}; "
                f"valid: {', '.join(valid_argument_names())}"
            )
        seen: dict[str, str] = {}
        for key in raw:
            name = _NAME_OF[key]
            if name in seen:
                raise ValueError(f"model arguments {seen[name]} and {key} set the same thing ({name})")
            seen[name] = key
        sampling = sorted(seen[name] for name in _SAMPLING_ARGS if name in seen)
        if raw.get("nframes") is not None and sampling:
            raise ValueError(
                f"nframes (a fixed frame count) cannot be combined with {', '.join(sampling)} "
                "(Video-R1's sampling); set one or the other"
            )
        return raw

    @model_validator(mode="after")
    def _frames_and_pixels_in_order(self) -> BackendArgs:
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) > max_pixels ({self.max_pixels})")
        if self.min_frames > self.max_frames:
            raise ValueError(f"min_frames ({self.min_frames}) > max_frames ({self.max_frames})")
        if self.nframes is not None and self.nframes % TEMPORAL_FACTOR:
            raise ValueError(f"nframes must be even (frames go to the model in pairs), got {self.nframes}")
        if self.compile is True and self.attn_implementation == "flash_attention_2":
            raise ValueError("compile=true runs the sdpa or eager attention kernels, not flash_attention_2")
        if self.compile is True and self.device_map is not None:
            raise ValueError("compile=true needs the model on one device (drop device_map)")
        return self

    def compiles(self, device_type: str) -> bool:
        """Whether the decode step is compiled on a device of ``device_type`` (``compile=auto``: CUDA only)."""
        if self.compile == "auto":
            return (
                device_type == "cuda"
                and self.device_map is None
                and self.attn_implementation != "flash_attention_2"
            )
        return bool(self.compile)

    def frame_settings(
        self, *, factor: int = PIXEL_FACTOR, temporal_factor: int = TEMPORAL_FACTOR
    ) -> FrameSettings:
        """How videos are read; ``factor`` is the model's patch size x spatial merge (28 for Qwen2.5-VL)."""
        return FrameSettings(
            fps=self.fps,
            min_frames=self.min_frames,
            max_frames=self.max_frames,
            nframes=self.nframes,
            max_pixels=self.max_pixels,
            min_pixels=self.min_pixels,
            total_pixels=self.total_pixels,
            factor=factor,
            temporal_factor=temporal_factor,
        )

    @property
    def vreason_settings(self) -> VReasonSettings:
        """The method's settings alone (what the decode loop takes)."""
        return VReasonSettings(**{name: getattr(self, name) for name in VReasonSettings.model_fields})


# Arguments lmms-eval itself passes to every backend (``additional_config``); accepted and ignored
# only when they carry no meaning here.
HOST_ARGS: frozenset[str] = frozenset({"max_batch_size"})
_SAMPLING_ARGS = ("fps", "min_frames", "max_frames")
"""Arguments of Video-R1's sampling, which a fixed ``nframes`` replaces."""
CLI_CONFIG_KEYS: frozenset[str] = frozenset({"batch_size", "max_batch_size", "device"})
"""What lmms-eval's command line passes to every backend itself (``--batch_size``, ...)."""


def _names(name: str, field: FieldInfo) -> tuple[str, ...]:
    alias = field.validation_alias
    return tuple(alias.choices) if isinstance(alias, AliasChoices) else (name,)  # type: ignore[arg-type]


_NAME_OF: dict[str, str] = {
    accepted: name for name, field in BackendArgs.model_fields.items() for accepted in _names(name, field)
}


def valid_argument_names() -> list[str]:
    """Every accepted model argument name, aliases included, sorted."""
    return sorted(_NAME_OF)


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


@functools.cache
def args_schema(backend: str = BACKEND_NAME) -> type[BackendArgs]:
    """The model-argument schema of one family's backend (an lmms-eval model id)."""
    try:
        family = family_of_backend(backend)
    except ValueError as exc:
        raise ArgumentError(str(exc)) from None
    if backend == BACKEND_NAME:
        return BackendArgs

    class FamilyBackendArgs(BackendArgs):
        backend_name: ClassVar[str] = backend
        pretrained: str = Field(family.default_pretrained, description=_PRETRAINED_HELP)

    FamilyBackendArgs.__doc__ = f"Validated model arguments of the ``{backend}`` backend."
    return FamilyBackendArgs


def parse_model_args(raw: Mapping[str, Any], backend: str = BACKEND_NAME) -> BackendArgs:
    """Validate and type a backend's model arguments; unknown names fail naming the valid ones.

    ``raw`` is what lmms-eval passes to the constructor (``--model_args`` parsed, plus its
    ``batch_size``/``device``/``max_batch_size``), or a ``model_args`` mapping from a config file;
    ``backend`` is the lmms-eval model id (its family decides the default checkpoint).
    """
    schema = args_schema(backend)
    try:
        return schema.model_validate(dict(raw))
    except ValidationError as exc:
        raise ArgumentError(validation_message(exc, "model argument")) from None


def _shown(default: Any) -> str:
    return "—" if default is None else str(default).lower() if isinstance(default, bool) else str(default)


def model_args_markdown() -> str:
    """The README's table of model arguments (a test keeps the README equal to this).

    One table for every family's backend; a default that differs between them is listed per backend.
    """
    rows = ["| argument | default | what it does |", "|---|---|---|"]
    method = set(VReasonSettings.model_fields)
    fields = BackendArgs.model_fields
    ordered = [n for n in fields if n not in method] + [n for n in fields if n in method]
    backends = BACKEND_NAMES
    for name in ordered:
        field = fields[name]
        names = " / ".join(f"`{n}`" for n in _names(name, field))
        defaults = {b: _shown(args_schema(b).model_fields[name].default) for b in backends}
        if len(set(defaults.values())) == 1:
            shown = f"`{defaults[BACKEND_NAME]}`"
        else:
            shown = ", ".join(f"`{value}` (`{backend}`)" for backend, value in defaults.items())
        choices = [c for c in get_args(field.annotation) if isinstance(c, str)]
        for arg in get_args(field.annotation):  # Literal[...] | None
            choices += [c for c in get_args(arg) if isinstance(c, str)]
        if choices and bool in get_args(field.annotation):  # Literal[...] | bool
            choices += ["true", "false"]
        extra = f" ({', '.join(choices)})" if choices else ""
        rows.append(f"| {names} | {shown} | {field.description}{extra} |")
    return "\n".join(rows) + "\n"
