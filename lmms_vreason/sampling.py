"""Generation settings from lmms-eval's ``gen_kwargs``, and the sampler as transformers LogitsProcessors.

lmms-eval's own Qwen2.5-VL backend silently drops ``until`` and ``top_k`` and turns ``temperature=0``
into greedy behind the user's back; here every accepted key is honoured exactly and any other key is
an error. The processor chain is built in the same order as ``GenerationMixin._get_logits_processor``
so a seeded run samples exactly what ``model.generate`` would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import (
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopHLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

DEFAULT_MAX_NEW_TOKENS = 1024
# Keys lmms-eval adds itself or that ask for the one behaviour we have: accepted and checked.
_NEUTRAL = {"num_beams": 1, "use_cache": True}


@dataclass(frozen=True, kw_only=True)
class GenerationSettings:
    """How to pick tokens and when to stop. Validated on construction."""

    do_sample: bool = False
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    top_h: float | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    until: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.do_sample and not self.temperature > 0:
            raise ValueError(f"sampling needs temperature > 0, got {self.temperature}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.min_p is not None and not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")
        if self.top_h is not None and not 0.0 < self.top_h <= 1.0:
            raise ValueError(f"top_h must be in (0, 1], got {self.top_h}")
        if any(not isinstance(s, str) or not s for s in self.until):
            raise ValueError(f"until must be non-empty strings, got {self.until!r}")

    @classmethod
    def from_gen_kwargs(cls, gen_kwargs: Mapping[str, Any]) -> GenerationSettings:
        """Build from lmms-eval ``gen_kwargs``; unknown keys raise naming the accepted ones.

        ``temperature=0`` means greedy (lmms-eval's convention) unless ``do_sample`` is set true,
        which is then an error rather than a silent change.
        """
        kwargs = dict(gen_kwargs)
        accepted = {f for f in cls.__dataclass_fields__} | set(_NEUTRAL)
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise ValueError(f"unsupported generation kwargs {unknown}; accepted: {sorted(accepted)}")
        for key, neutral in _NEUTRAL.items():
            if key in kwargs and kwargs.pop(key) not in (neutral, None):
                raise ValueError(f"{key}={gen_kwargs[key]!r} is not supported (only {neutral})")
        until = kwargs.pop("until", None)
        if until is None:
            until = ()
        elif isinstance(until, str):
            until = (until,)
        elif isinstance(until, Sequence):
            until = tuple(until)
        else:
            raise ValueError(f"until must be a string or a list of strings, got {until!r}")
        temperature = kwargs.pop("temperature", None)
        do_sample = kwargs.pop("do_sample", None)
        if temperature is not None and float(temperature) == 0.0:
            if do_sample:
                raise ValueError("do_sample=true with temperature=0 is contradictory")
            do_sample, temperature = False, 1.0
        if do_sample is None:
            do_sample = temperature is not None
        values: dict[str, Any] = {k: v for k, v in kwargs.items() if v is not None}
        for key in ("top_p", "min_p", "top_h"):
            if key in values:
                values[key] = float(values[key])
        for key in ("top_k", "max_new_tokens"):
            if key in values:
                values[key] = int(values[key])
        return cls(
            do_sample=bool(do_sample),
            temperature=1.0 if temperature is None else float(temperature),
            until=until,
            **values,
        )

    def logits_processors(self) -> LogitsProcessorList:
        """The warpers ``generate`` would apply for these settings (empty when greedy)."""
        procs = LogitsProcessorList()
        if not self.do_sample:
            return procs
        if self.temperature != 1.0:
            procs.append(TemperatureLogitsWarper(self.temperature))
        if self.top_h is not None:
            procs.append(TopHLogitsWarper(top_h=self.top_h))
        if self.top_k is not None and self.top_k != 0:
            procs.append(TopKLogitsWarper(top_k=self.top_k, min_tokens_to_keep=1))
        if self.top_p is not None and self.top_p < 1.0:
            procs.append(TopPLogitsWarper(top_p=self.top_p, min_tokens_to_keep=1))
        if self.min_p is not None:
            procs.append(MinPLogitsWarper(min_p=self.min_p, min_tokens_to_keep=1))
        return procs


class TokenSampler:
    """Picks the next token from raw logits: processors, then argmax or a multinomial draw."""

    def __init__(self, settings: GenerationSettings, generator: torch.Generator | None = None) -> None:
        self.settings = settings
        self.processors = settings.logits_processors()
        self.generator = generator

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        scores = self.processors(input_ids, logits) if self.processors else logits
        if not self.settings.do_sample:
            return torch.argmax(scores, dim=-1)
        probs = torch.softmax(scores, dim=-1)
        return torch.multinomial(probs, num_samples=1, generator=self.generator).squeeze(1)
