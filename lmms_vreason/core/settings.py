"""The method's settings: V-Reason hyperparameters and how tokens are picked.

Declarative (pydantic v2, frozen, validated on construction) and free of torch, so a config file
or a command line can be checked in milliseconds, before any model loads. The lmms-eval argument
schema (:mod:`lmms_vreason.lmms.args`) builds on :class:`VReasonSettings`; experiment configs
validate their generation overrides with :class:`GenerationSettings`. Each setting is defined
once, here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Objective = Literal["switch", "min_entropy", "max_entropy"]
NormScope = Literal["block", "head", "token"]

DEFAULT_MAX_NEW_TOKENS = 1024

PAPER_LR_GRID: tuple[float, ...] = (5e-5, 1e-4, 1.5e-4, 2e-4, 2.5e-4, 3e-4, 3.5e-4, 4e-4, 4.5e-4, 5e-4)
"""The 10 learning rates "from 5e-5 to 5e-4" of App. B, as we read them (docs/method.md §3)."""


def lr_label(lr: float) -> str:
    """``0.00015`` -> ``1.5e-4``: how a learning rate is spelled in run and folder names."""
    mantissa, exponent = f"{lr:.6e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def validation_message(error: ValidationError, what: str) -> str:
    """One line per problem, naming the setting and the value given: ``{what} lr='fast': ...``."""
    lines = []
    for item in error.errors(include_url=False):
        msg = item["msg"].removeprefix("Value error, ")
        if not item["loc"]:
            lines.append(msg)
            continue
        name = ".".join(str(part) for part in item["loc"])
        lines.append(f"{what} {name}={item['input']!r}: {msg}")
    return "; ".join(lines)


class VReasonSettings(BaseModel):
    """Hyperparameters of V-Reason and V-Reason (Lite) (``docs/method.md`` §1-2).

    ``vreason=False`` turns the controller off; with ``lite`` on as well, the cache is still pruned
    (that combination is ``prune_only``, the Table 8 ablation).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    vreason: bool = Field(True, description="run the value-cache controller")
    step_size: int = Field(4, ge=1, description="optimise every k-th decoded token (k)")
    lr: float = Field(3e-4, gt=0, allow_inf_nan=False, description="AdamW learning rate of the controller")
    ema_beta: float = Field(0.98, ge=0, lt=1, description="EMA coefficient of the entropy (beta)")
    grad_clip: float = Field(
        1.0, gt=0, allow_inf_nan=False, description="max gradient norm of the controller update"
    )
    objective: Objective = Field("switch", description="entropy objective")
    norm_scope: NormScope = Field("block", description="scope of the norm kept by Eq. 1")
    lite: bool = Field(False, description="V-Reason (Lite): prune low-value-norm video tokens after prefill")
    keep_ratio: float = Field(0.5, gt=0, le=1, description="share of video tokens kept by Lite")
    prune_only: bool = Field(False, description="Lite pruning without controller or rescale (Table 8)")
    lr_grid: tuple[float, ...] | None = Field(
        None,
        description=(
            "decode every request once per lr in one batch after one prefill: `paper` (the paper's "
            "10 lrs, 5e-5..5e-4) or lrs joined by `:`; lmms-eval scores the first lr, every lr's "
            "response goes to `vreason_lr_grid_rank*.jsonl` (`vreason grid-score` scores them all)"
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _grid_sets_the_lr(cls, data: Any) -> Any:
        """``lr_grid=paper`` or ``lr_grid=1e-4:3e-4``; the grid's first lr is the run's ``lr``."""
        if not isinstance(data, Mapping) or data.get("lr_grid") is None:
            return data
        grid = data["lr_grid"]
        if isinstance(grid, str):
            text = grid.strip()
            try:
                grid = PAPER_LR_GRID if text == "paper" else tuple(float(p) for p in text.split(":") if p)
            except ValueError:
                raise ValueError(
                    f"lr_grid must be 'paper' or learning rates joined by ':', got {text!r}"
                ) from None
        elif isinstance(grid, (int, float)):
            grid = (grid,)
        grid = tuple(grid)
        if not grid:
            return data  # the field validator names the problem
        if data.get("lr") is not None and float(data["lr"]) != float(grid[0]):
            raise ValueError(
                f"lr={data['lr']} and lr_grid={grid} disagree: with a grid, lr is the grid's first lr "
                "(the one lmms-eval scores); drop lr"
            )
        return {**data, "lr_grid": grid, "lr": grid[0]}

    @field_validator("lr_grid")
    @classmethod
    def _grid_values(cls, grid: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if grid is None:
            return None
        if not grid or any(not (lr > 0 and lr < float("inf")) for lr in grid):
            raise ValueError(f"lr_grid needs one or more finite learning rates > 0, got {grid}")
        if len(set(grid)) != len(grid):
            raise ValueError(f"lr_grid repeats a learning rate: {grid}")
        return grid

    @model_validator(mode="after")
    def _modes_agree(self) -> VReasonSettings:
        if self.prune_only and self.vreason:
            raise ValueError("prune_only=true runs no controller: set vreason=false (or drop prune_only)")
        if self.prune_only and not self.lite:
            raise ValueError("prune_only=true needs lite=true (it is pruning without the controller)")
        if self.lr_grid is not None and not self.vreason:
            raise ValueError("lr_grid needs vreason=true (the learning rate only matters to the controller)")
        return self

    @property
    def learning_rates(self) -> tuple[float, ...]:
        """The lrs every request is decoded with: the grid, or the one ``lr``."""
        return self.lr_grid if self.lr_grid is not None else (self.lr,)

    @property
    def controls(self) -> bool:
        """Whether the value-cache controller runs."""
        return self.vreason

    @property
    def prunes(self) -> bool:
        """Whether the KV cache is pruned after prefill (V-Reason Lite or pruning-only)."""
        return self.lite


# Keys lmms-eval adds itself or that ask for the one behaviour we have: accepted and checked.
_NEUTRAL_GEN_KWARGS: dict[str, Any] = {"num_beams": 1, "use_cache": True}


class GenerationSettings(BaseModel):
    """How to pick tokens and when to stop (the ``--gen_kwargs`` of a task or a run).

    lmms-eval's own Qwen2.5-VL backend silently drops ``until`` and ``top_k`` and turns
    ``temperature=0`` into greedy behind the user's back; here every accepted key is honoured
    exactly and any other key is an error.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    do_sample: bool = False
    temperature: float = Field(1.0, allow_inf_nan=False)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0, le=1)
    top_h: float | None = Field(None, gt=0, le=1)
    max_new_tokens: int = Field(DEFAULT_MAX_NEW_TOKENS, ge=1)
    until: tuple[str, ...] = ()

    @field_validator("until", mode="before")
    @classmethod
    def _until_as_tuple(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, Sequence):
            return tuple(value)
        raise ValueError(f"until must be a string or a list of strings, got {value!r}")

    @field_validator("until")
    @classmethod
    def _until_non_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not s for s in value):
            raise ValueError(f"until must be non-empty strings, got {value!r}")
        return value

    @model_validator(mode="after")
    def _sampling_needs_temperature(self) -> GenerationSettings:
        if self.do_sample and not self.temperature > 0:
            raise ValueError(f"sampling needs temperature > 0, got {self.temperature}")
        return self

    @classmethod
    def from_gen_kwargs(cls, gen_kwargs: Mapping[str, Any]) -> GenerationSettings:
        """Build from lmms-eval ``gen_kwargs``; unknown keys raise naming the accepted ones.

        ``temperature=0`` means greedy (lmms-eval's convention) unless ``do_sample`` is set true,
        which is then an error rather than a silent change. ``do_sample`` defaults to true when a
        temperature is given.
        """
        kwargs = dict(gen_kwargs)
        accepted = set(cls.model_fields) | set(_NEUTRAL_GEN_KWARGS)
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise ValueError(f"unsupported generation kwargs {unknown}; accepted: {sorted(accepted)}")
        for key, neutral in _NEUTRAL_GEN_KWARGS.items():
            if key in kwargs and kwargs.pop(key) not in (neutral, None):
                raise ValueError(f"{key}={gen_kwargs[key]!r} is not supported (only {neutral})")
        temperature = kwargs.pop("temperature", None)
        do_sample = kwargs.pop("do_sample", None)
        try:
            greedy = temperature is not None and float(temperature) == 0.0
        except (TypeError, ValueError):
            raise ValueError(f"generation kwarg temperature={temperature!r} is not a number") from None
        if greedy:
            if do_sample:
                raise ValueError("do_sample=true with temperature=0 is contradictory")
            do_sample, temperature = False, None
        if do_sample is None:
            do_sample = temperature is not None
        values = {k: v for k, v in kwargs.items() if v is not None}
        values["do_sample"] = do_sample
        if temperature is not None:
            values["temperature"] = temperature
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ValueError(validation_message(exc, "generation kwarg")) from None
